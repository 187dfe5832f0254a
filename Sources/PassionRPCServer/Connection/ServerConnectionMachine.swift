import NIOCore
import PassionWire

/// The server side of one passion/1 connection as a value: bytes from the client, handler
/// results and the clock go in; frames (in `queue`) and actions for the handler come out. It does
/// no I/O and reads no clock, so every transition can be driven event by event in a test
/// (`ServerConnectionMachineTests`), and the NIO handler only translates.
///
/// Wrong input comes in three kinds, treated differently:
/// - the client broke the protocol (bad preface, malformed or unexpected frame, call id reuse,
///   oversize frame, control-frame flood, too much buffered): GOAWAY with the reason; then the
///   machine reads and discards for `errorDrainTime` so the GOAWAY is not lost to a TCP reset;
/// - one call's input is bad (oversize or undecodable message, metadata too large, wrong message
///   count): that call ends with a status, the connection serves on;
/// - frames for calls that already ended (a CANCEL racing a response): ignored.
struct ServerConnectionMachine {
    typealias Instant = MonotonicInstant

    enum Phase: Equatable {
        case awaitingPreface
        case awaitingHello
        case ready
        /// GOAWAY sent (or received): open calls finish, new ones are refused.
        case draining
        /// GOAWAY for a connection error sent: input is discarded until the peer closes or the
        /// drain time is over.
        case closing
        case closed
    }

    let configuration: ServerConnectionConfiguration
    let router: RPCRouter
    let budget: ServerMemoryBudget?
    /// Observations only: nothing the machine decides reads them.
    let metrics: ServerMetrics
    var phase: Phase = .awaitingPreface
    var settings: NegotiatedSettings?
    var queue = OutboundQueue()
    var calls: [UInt32: ServerCallState] = [:]
    /// Calls whose handler returned or whose response closed: the only ones that can be
    /// released, so a flush looks at these rather than at every open call.
    var maybeFinished: Set<UInt32> = []
    /// `maybeFinished` as it was when a flush began: a copy to iterate made its first removal
    /// copy the whole set, one allocation per call.
    private var finishCandidates: [UInt32] = []
    /// The deadlines of the calls that have one, apart from their state: the timer's next
    /// instant is read after every event and must not walk (and copy) every call.
    var callDeadlines: [UInt32: Instant] = [:]
    /// Calls holding part of a message: what makes input unfinished besides a partial frame.
    var assemblingCalls: Set<UInt32> = []
    /// Handlers not yet returned: what `max_concurrent_calls` counts.
    var runningHandlers = 0
    var highestCallID: UInt32 = 0
    var writer: FrameWriter?
    let inflater = Inflater()
    var windows = InboundWindows(initialWindow: 1024 * 1024)
    private var inbound = ByteBuffer()
    private var decoder: FrameDecoder
    var pingBucket: TokenBucket
    var cancelBucket: TokenBucket

    // The clock's marks; `nextDeadline` is the earliest that matters.
    private var handshakeDeadline: Instant?
    var idleSince: Instant?
    private var lastReadAt: Instant
    var pingSentAt: Instant?
    private var nextPingData: UInt64 = 1
    var graceDeadline: Instant?
    private var drainDeadline: Instant?
    private var stallMark: (since: Instant, received: Int)?
    private var receivedBytes = 0

    // Memory: request bytes held, and what is reserved from the server's budget for them and for
    // queued responses.
    var bufferedRequestBytes = 0
    var reservedRequestBytes = 0
    var reservedResponseBytes = 0
    var isReading = true

    init(
        configuration: ServerConnectionConfiguration, router: RPCRouter, budget: ServerMemoryBudget?,
        metrics: ServerMetrics = .disabled, now: Instant
    ) {
        self.configuration = configuration
        self.metrics = metrics
        self.router = router
        self.budget = budget
        self.decoder = FrameDecoder(maxPayloadSize: configuration.settings.maxFrameSize)
        let pingInterval = max(Double(configuration.settings.minPingIntervalMillis) / 1000, 0.001)
        self.pingBucket = TokenBucket(capacity: configuration.pingBurst, ratePerSecond: 1 / pingInterval, now: now)
        self.cancelBucket = TokenBucket(
            capacity: configuration.cancelBurst, ratePerSecond: Double(configuration.cancelRatePerSecond), now: now)
        self.lastReadAt = now
        self.handshakeDeadline = now + configuration.handshakeTimeout
    }

    /// The HELLO tells clients the idle timeout this connection really applies.
    var announcedSettings: ConnectionSettings {
        var settings = configuration.settings
        settings.idleTimeoutMillis = configuration.idleTimeout.map {
            Int($0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000)
        } ?? 0
        return settings
    }

    /// The connection was accepted: the server's HELLO goes out at once.
    mutating func start() {
        let hello = announcedSettings.hello
        queue.appendControl { FrameWriter.writeHello(hello, into: &$0) }
    }

    // MARK: - Input

    /// Bytes from the client.
    mutating func receive(_ bytes: ByteBuffer, now: Instant) -> [ServerConnectionAction] {
        guard phase != .closed else { return [] }
        lastReadAt = now
        receivedBytes += bytes.readableBytes
        guard phase != .closing else { return [] }
        var actions: [ServerConnectionAction] = []
        if inbound.readableBytes == 0 {
            inbound = bytes  // the common case: no partial frame waits, so no copy
        } else {
            var input = bytes
            inbound.writeBuffer(&input)
        }
        do {
            if phase == .awaitingPreface {
                guard try ConnectionPreface.consume(&inbound) else { return actions }
                phase = .awaitingHello
            }
            while phase == .awaitingHello || phase == .ready || phase == .draining, let frame = try decoder.decode(buffer: &inbound) {
                try handle(frame, now: now, &actions)
            }
        } catch {
            connectionError(error as? WireError ?? WireError(.malformedFrame, "\(error)"), now: now, &actions)
        }
        // A buffer fully consumed is dropped, so the next read does not copy the slices handed out.
        if inbound.readableBytes == 0 { inbound = ByteBuffer() } else { inbound.discardReadBytes() }
        markStall(now: now)
        return actions
    }

    /// The client closed its side of the connection (or the connection went away).
    mutating func inputClosed(now: Instant) -> [ServerConnectionAction] {
        guard phase != .closed else { return [] }
        return closeNow(now: now)
    }

    private mutating func handle(_ frame: Frame, now: Instant, _ actions: inout [ServerConnectionAction]) throws {
        switch phase {
        case .awaitingHello:
            guard frame.type == .hello else { throw WireError(.unexpectedFrame, "expected HELLO, got \(frame.type)") }
            try receiveHello(frame, now: now)
        case .ready, .draining:
            try dispatch(frame, now: now, &actions)
        case .awaitingPreface, .closing, .closed:
            break
        }
    }

    private mutating func receiveHello(_ frame: Frame, now: Instant) throws {
        var payload = frame.payload
        let negotiated = NegotiatedSettings(local: announcedSettings, peer: try ConnectionSettings(peer: try Hello.read(from: &payload)))
        settings = negotiated
        writer = FrameWriter(settings: negotiated)
        windows = InboundWindows(initialWindow: negotiated.local.initialWindowSize)
        queue.initialWindow = negotiated.peer.initialWindowSize
        phase = .ready
        handshakeDeadline = nil
        idleSince = now
    }

    // MARK: - Output

    /// Up to `limit` bytes of frames for the socket, fairly taken across calls; calls whose last
    /// frames left are forgotten, and reading resumes once queued responses have gone down.
    mutating func takeOutput(limit: Int, now: Instant) -> (ByteBuffer?, [ServerConnectionAction]) {
        queue.release(upTo: limit)
        var actions: [ServerConnectionAction] = []
        let output = queue.output.readableBytes > 0 ? queue.takeOutput(allocator: ByteBufferAllocator()) : nil
        releaseFinishedCalls(now: now, &actions)
        syncResponseReservation()
        if !isReading, queue.bufferedBytes <= configuration.maxQueuedResponseBytes / 2, phase != .closing, phase != .closed {
            isReading = true
            actions.append(.setReading(true))
        }
        return (output, actions)
    }

    /// Whether frames wait for the socket or for a client's window.
    var hasOutput: Bool { queue.output.readableBytes > 0 || queue.hasPending }

    /// Stops reading while the client does not take its responses: new calls would only add more.
    mutating func checkQueuedResponses(_ actions: inout [ServerConnectionAction]) {
        guard isReading, queue.bufferedBytes > configuration.maxQueuedResponseBytes else { return }
        isReading = false
        actions.append(.setReading(false))
    }

    /// Forgets calls that are over for both sides and whose frames have all gone out; the
    /// connection becomes idle, or closes while draining, when none are left.
    /// Reads call `index`'s state where it lives. `calls.values[index].field` as a value copies
    /// the whole state first, retaining and releasing the buffers and metrics it holds: about
    /// ten times per unary call, 2.6% of a dashboard call's server CPU.
    mutating func peek<T>(_ index: Dictionary<UInt32, ServerCallState>.Index, _ read: (inout ServerCallState) -> T) -> T {
        read(&calls.values[index])
    }

    mutating func releaseFinishedCalls(now: Instant, _ actions: inout [ServerConnectionAction]) {
        finishCandidates.removeAll(keepingCapacity: true)
        finishCandidates.append(contentsOf: maybeFinished)
        for id in finishCandidates {
            guard let index = calls.index(forKey: id) else {
                maybeFinished.remove(id)
                continue
            }
            guard peek(index, { $0.isFinished }), !queue.hasPending(callID: id) else { continue }
            maybeFinished.remove(id)
            recordEnd(calls.values[index], now: now)
            calls.remove(at: index)
            callDeadlines[id] = nil
            assemblingCalls.remove(id)
            windows.forget(callID: id)
            queue.forget(callID: id)
        }
        if calls.isEmpty, phase == .ready, idleSince == nil { idleSince = now }
        closeIfDrained(now: now, &actions)
    }

    /// The call's metrics: its status and its time from CALL to its last frame.
    private func recordEnd(_ call: ServerCallState, now: Instant) {
        call.metrics?.callFinished(call.status ?? .unavailable, after: call.startedAt.duration(to: now))
    }

    mutating func closeIfDrained(now: Instant, _ actions: inout [ServerConnectionAction]) {
        guard phase == .draining, calls.isEmpty else { return }
        actions += closeNow(now: now)
    }

    /// Ends everything at once: running handlers are cancelled, reservations given back.
    mutating func closeNow(now: Instant) -> [ServerConnectionAction] {
        var actions: [ServerConnectionAction] = []
        for (id, call) in calls where call.handlerRunning {
            actions.append(.cancelCall(callID: id, error: RPCError(code: .unavailable, message: "connection closed")))
        }
        // Calls cut off here never reach `releaseFinishedCalls`: they end now, as UNAVAILABLE
        // unless their status had been queued.
        for index in calls.indices {
            recordEnd(calls.values[index], now: now)
            calls.values[index].metrics = nil
        }
        phase = .closed
        budget?.release(reservedRequestBytes + reservedResponseBytes)
        reservedRequestBytes = 0
        reservedResponseBytes = 0
        actions.append(.close)
        return actions
    }

    // MARK: - Errors

    /// GOAWAY with the error's code; running handlers are cancelled and input is drained until the
    /// client closes or `errorDrainTime` is over.
    mutating func connectionError(_ error: WireError, now: Instant, _ actions: inout [ServerConnectionAction]) {
        guard phase != .closing, phase != .closed else { return }
        let goAway = GoAway(lastCallID: highestCallID, code: error.goAwayCode, debugMessage: error.message)
        metrics.goAway(error.kind)
        queue.appendControl { FrameWriter.writeGoAway(goAway, into: &$0) }
        for (id, call) in calls where call.handlerRunning {
            actions.append(.cancelCall(callID: id, error: RPCError(code: .unavailable, message: "connection error: \(error.message)")))
        }
        phase = .closing
        drainDeadline = now + configuration.errorDrainTime
        handshakeDeadline = nil
        if !isReading {
            isReading = true
            actions.append(.setReading(true))
        }
    }

    // MARK: - Time

    /// The earliest instant at which `tick` has something to do.
    /// Read after every event, so it allocates nothing and walks only the calls with deadlines.
    var nextDeadline: Instant? {
        var soonest: Instant?
        func consider(_ instant: Instant?) {
            guard let instant else { return }
            if let current = soonest, current <= instant { return }
            soonest = instant
        }
        consider(handshakeDeadline)
        consider(graceDeadline)
        consider(drainDeadline)
        if phase == .ready, calls.isEmpty, let idleSince, let timeout = configuration.idleTimeout { consider(idleSince + timeout) }
        if phase == .ready || phase == .draining, let interval = configuration.keepaliveInterval {
            consider(pingSentAt.map { $0 + configuration.keepaliveTimeout } ?? lastReadAt + interval)
        }
        if let stallMark { consider(stallMark.since + configuration.minimumReceiveWindow) }
        for deadline in callDeadlines.values { consider(deadline) }
        return soonest
    }

    /// The clock reached `now`: timeouts, keepalive, deadlines, slow peers.
    mutating func tick(now: Instant) -> [ServerConnectionAction] {
        guard phase != .closed else { return [] }
        if let handshakeDeadline, now >= handshakeDeadline { return closeNow(now: now) }
        if let drainDeadline, now >= drainDeadline { return closeNow(now: now) }
        var actions: [ServerConnectionAction] = []
        if let graceDeadline, now >= graceDeadline {
            self.graceDeadline = nil
            return closeNow(now: now)
        }
        if let pingSentAt, now >= pingSentAt + configuration.keepaliveTimeout { return closeNow(now: now) }
        if pingSentAt == nil, phase == .ready || phase == .draining, let interval = configuration.keepaliveInterval,
            now >= lastReadAt + interval
        {
            pingSentAt = now
            let data = nextPingData
            nextPingData += 1
            queue.appendControl { FrameWriter.writePing(.ping, data: data, into: &$0) }
        }
        if let stallMark, now >= stallMark.since + configuration.minimumReceiveWindow {
            guard receivedBytes - stallMark.received >= configuration.minimumReceiveBytes else {
                connectionError(WireError(.enhanceYourCalm, "too slow: an unfinished frame or message stalls"), now: now, &actions)
                return actions
            }
            self.stallMark = (now, receivedBytes)
        }
        if phase == .ready, calls.isEmpty, let idleSince, let timeout = configuration.idleTimeout, now >= idleSince + timeout {
            let goAway = GoAway(lastCallID: highestCallID, code: .noError, debugMessage: "idle")
            metrics.goAway("idle")
            queue.appendControl { FrameWriter.writeGoAway(goAway, into: &$0) }
            phase = .draining
            closeIfDrained(now: now, &actions)
            return actions
        }
        let due = callDeadlines.filter { now >= $0.value }.keys.sorted()
        for id in due { deadlineExceeded(id, &actions) }
        return actions
    }

    /// Tracks whether input is unfinished (a partial frame, or a message waiting for fragments),
    /// so that `tick` can close a peer that trickles it.
    private mutating func markStall(now: Instant) {
        let unfinished = inbound.readableBytes > 0 || !assemblingCalls.isEmpty
        if !unfinished {
            stallMark = nil
        } else if stallMark == nil {
            stallMark = (now, receivedBytes)
        }
    }

    // MARK: - Shutdown

    /// Stops accepting calls: GOAWAY now; open calls finish within the grace period; streaming
    /// handlers are told, so long-lived ones (Subscribe) end at once with a status.
    mutating func shutdown(now: Instant) -> [ServerConnectionAction] {
        switch phase {
        case .awaitingPreface, .awaitingHello:
            return closeNow(now: now)
        case .closing, .closed:
            return []
        case .ready, .draining:
            break
        }
        var actions: [ServerConnectionAction] = []
        guard graceDeadline == nil else { return actions }
        let goAway = GoAway(lastCallID: highestCallID, code: .noError, debugMessage: "server shutting down")
        metrics.goAway("shutdown")
        queue.appendControl { FrameWriter.writeGoAway(goAway, into: &$0) }
        phase = .draining
        graceDeadline = now + configuration.shutdownGracePeriod
        let streams = calls.filter { $0.value.handlerRunning && $0.value.kind != .unary }.map(\.key).sorted()
        if !streams.isEmpty { actions.append(.shutdownCalls(streams)) }
        closeIfDrained(now: now, &actions)
        return actions
    }
}
