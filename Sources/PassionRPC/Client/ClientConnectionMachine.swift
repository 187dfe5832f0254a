import NIOCore
import PassionWire

/// Names a call inside a `ClientConnectionMachine` from the moment it is submitted, before it
/// has a call id (it may wait for the HELLO or for the server's call limit).
struct ClientCallHandle: Hashable, Sendable {
    let rawValue: UInt64
}

/// What the client connection's owner must do after an event.
enum ClientConnectionAction {
    /// The server's HELLO arrived: the connection takes calls.
    case ready(NegotiatedSettings)
    /// The connection will never become ready.
    case readyFailed(RPCError)
    /// The call's CALL frame is queued.
    case started(ClientCallHandle)
    /// A response message of a server- or bidirectional-streaming call.
    case message(ClientCallHandle, InboundMessage)
    /// The call ended with OK: the single response (empty for streaming calls) and its metadata.
    case succeeded(ClientCallHandle, UnaryResponse)
    case failed(ClientCallHandle, RPCError)
    case pong(UInt64)
    /// The connection is over: pings, writers and the handshake fail with this error.
    case connectionFailed(RPCError)
    /// Flush what is queued and close the socket.
    case close
}

/// The client side of one passion/1 connection as a value: bytes from the server and the
/// caller's requests go in; frames (in `queue`) and actions come out. It does no I/O, so every
/// transition can be driven frame by frame in a test (`ClientConnectionMachineTests`); the NIO
/// handler only translates. The wire pieces it shares with the server side (frame decoding and
/// writing, the outbound queue with its windows, message assembly) live once in PassionWire.
///
/// Wrong input comes in two kinds: the server broke the protocol (GOAWAY with the reason, every
/// call fails, the connection closes), or one response is unusable (too large, undecodable, an
/// extra message on a unary call): that call is cancelled and fails, the others go on.
struct ClientConnectionMachine {
    enum Phase: Equatable {
        case starting
        case ready
        /// The server sent GOAWAY: no new calls; open ones finish.
        case draining
        case closed
    }

    let localSettings: ConnectionSettings
    private(set) var phase: Phase = .starting
    private(set) var settings: NegotiatedSettings?
    var queue = OutboundQueue()
    private(set) var calls: [UInt32: ClientCallState] = [:]
    private var callIDs: [ClientCallHandle: UInt32] = [:]
    private var waitingToStart: [PendingCall] = []
    private var nextHandle: UInt64 = 1
    /// Call ids never wrap: a connection that used them all takes no new calls.
    var nextCallID: UInt32 = 1
    private var pings: Set<UInt64> = []
    private var nextPingID: UInt64 = 1
    private(set) var writer: FrameWriter?
    private var windows = InboundWindows(initialWindow: 1024 * 1024)
    private var inbound = ByteBuffer()
    private var decoder: FrameDecoder
    private let inflater = Inflater()
    /// Why the connection ended, for calls failed when the socket closes.
    private(set) var closedError: RPCError?

    init(settings: ConnectionSettings) {
        self.localSettings = settings
        self.decoder = FrameDecoder(maxPayloadSize: settings.maxFrameSize)
        queue.appendControl {
            $0.writeBytes(ConnectionPreface.bytes)
            FrameWriter.writeHello(settings.hello, into: &$0)
        }
    }

    /// Whether new calls would be refused (GOAWAY, closed, or call ids used up).
    var isDraining: Bool { phase == .draining || phase == .closed || nextCallID == UInt32.max }

    var openCalls: Int { calls.count + waitingToStart.count }

    /// The call id a handle got, while the call is open on the wire.
    func callID(of handle: ClientCallHandle) -> UInt32? { callIDs[handle] }

    // MARK: - Input

    /// Bytes from the server.
    mutating func receive(_ bytes: ByteBuffer) -> [ClientConnectionAction] {
        guard phase != .closed, closedError == nil else { return [] }
        if inbound.readableBytes == 0 {
            inbound = bytes
        } else {
            var input = bytes
            inbound.writeBuffer(&input)
        }
        var actions: [ClientConnectionAction] = []
        do {
            while phase != .closed, closedError == nil, let frame = try decoder.decode(buffer: &inbound) {
                try handle(frame, &actions)
            }
        } catch {
            protocolError(error as? WireError ?? WireError(.malformedFrame, "\(error)"), &actions)
        }
        if inbound.readableBytes == 0 { inbound = ByteBuffer() } else { inbound.discardReadBytes() }
        return actions
    }

    /// The transport failed (TLS, reset): the connection closes with this error.
    mutating func transportFailed(_ error: RPCError) -> [ClientConnectionAction] {
        if closedError == nil { closedError = error }
        return [.close]
    }

    /// The socket closed: everything still open fails.
    mutating func closed() -> [ClientConnectionAction] {
        guard phase != .closed else { return [] }
        phase = .closed
        let error = closedError ?? RPCError(code: .unavailable, message: "connection closed")
        var actions: [ClientConnectionAction] = [.readyFailed(error)]
        for pending in waitingToStart { actions.append(.failed(pending.handle, error)) }
        waitingToStart = []
        for call in calls.values.sorted(by: { $0.id < $1.id }) { actions.append(.failed(call.handle, error)) }
        calls = [:]
        callIDs = [:]
        pings = []
        actions.append(.connectionFailed(error))
        return actions
    }

    private mutating func handle(_ frame: Frame, _ actions: inout [ClientConnectionAction]) throws {
        if phase == .starting, frame.type != .hello, frame.type != .goAway {
            throw WireError(.unexpectedFrame, "expected HELLO, got \(frame.type)")
        }
        switch frame.type {
        case .hello:
            guard phase == .starting else { throw WireError(.unexpectedFrame, "second HELLO") }
            var payload = frame.payload
            let negotiated = NegotiatedSettings(
                local: localSettings, peer: try ConnectionSettings(peer: try Hello.read(from: &payload)))
            settings = negotiated
            writer = FrameWriter(settings: negotiated)
            windows = InboundWindows(initialWindow: negotiated.local.initialWindowSize)
            queue.initialWindow = negotiated.peer.initialWindowSize
            phase = .ready
            actions.append(.ready(negotiated))
            startWaitingCalls(&actions)
        case .headers:
            guard calls[frame.callID] != nil else { return }
            var payload = frame.payload
            calls[frame.callID]?.initialMetadata = try payload.readMetadata(limit: localSettings.maxMetadataSize)
        case .message:
            guard calls[frame.callID] != nil else { return }
            try windows.received(callID: frame.callID, bytes: frame.payload.readableBytes)
            try receiveMessage(frame.payload, flags: frame.flags, callID: frame.callID, wireSize: frame.payload.readableBytes, &actions)
        case .trailers:
            guard calls[frame.callID] != nil else { return }
            var payload = frame.payload
            let head = try TrailersHead.read(from: &payload, metadataLimit: localSettings.maxMetadataSize)
            if frame.flags.contains(.hasMessage) {
                try receiveMessage(payload, flags: frame.flags, callID: frame.callID, wireSize: 0, &actions)
            }
            if let call = calls[frame.callID] { finish(call, trailers: head, &actions) }
        case .cancel:
            guard let call = calls[frame.callID] else { return }
            var payload = frame.payload
            let reason = CancelReason(rawValue: payload.readInteger(as: UInt8.self) ?? 0)
            let text = payload.readString(length: payload.readableBytes) ?? ""
            let error = RPCError(
                code: reason == .refused ? .unavailable : .cancelled,
                message: text.isEmpty ? "call \(reason.description.lowercased()) by the server" : text,
                wasRefused: reason == .refused)
            end(call, with: .failed(call.handle, error), &actions)
        case .ping:
            guard frame.payload.readableBytes == 8 else { throw WireError(.malformedFrame, "PING must carry 8 bytes") }
            queue.appendControl {
                $0.writeFrameHeader(type: .pong, flags: [], callID: 0, payloadLength: 8)
                $0.writeImmutableBuffer(frame.payload)
            }
        case .pong:
            var payload = frame.payload
            if let id = payload.readInteger(as: UInt64.self), pings.remove(id) != nil { actions.append(.pong(id)) }
        case .goAway:
            var payload = frame.payload
            receiveGoAway(try GoAway.read(from: &payload), &actions)
        case .window:
            var payload = frame.payload
            guard payload.readableBytes == 4, let increment = payload.readInteger(as: UInt32.self), increment > 0 else {
                throw WireError(.malformedFrame, "WINDOW must carry a positive 4-byte increment")
            }
            if calls[frame.callID] != nil { queue.grant(callID: frame.callID, increment: Int(increment)) }
        case .call, .halfClose:
            throw WireError(.unexpectedFrame, "\(frame.type) is not valid from a server")
        default:
            guard frame.flags.contains(.ignorable) else { throw WireError(.unknownFrameType, "unknown frame type \(frame.type)") }
        }
    }

    private mutating func receiveGoAway(_ goAway: GoAway, _ actions: inout [ClientConnectionAction]) {
        let error = RPCError(
            code: .unavailable, message: "server sent GOAWAY (\(goAway.code)): \(goAway.debugMessage)", wasRefused: true)
        if goAway.code != .noError { closedError = RPCError(code: .unavailable, message: error.message) }
        phase = .draining
        actions.append(.readyFailed(error))
        for pending in waitingToStart { actions.append(.failed(pending.handle, error)) }
        waitingToStart = []
        // Calls above the server's last id were never processed: safe to retry elsewhere.
        for call in calls.values.sorted(by: { $0.id < $1.id }) where call.id > goAway.lastCallID {
            forget(call)
            actions.append(.failed(call.handle, error))
        }
        closeIfDrained(&actions)
    }

    /// `wireSize` is the MESSAGE payload this frame spent of the call's window.
    private mutating func receiveMessage(
        _ bytes: ByteBuffer, flags: FrameFlags, callID: UInt32, wireSize: Int, _ actions: inout [ClientConnectionAction]
    ) throws {
        guard let settings, var call = calls[callID] else { return }
        let message: ByteBuffer?
        do {
            message = try call.assembler.append(
                bytes, flags: flags, settings: settings, inflater: inflater, allocator: ByteBufferAllocator())
        } catch let error as WireError where !error.isConnectionError {
            // An oversize or undecodable response is this call's problem, not the connection's.
            let code: StatusCode = error.kind == .messageTooLarge ? .resourceExhausted : .internal
            calls[callID] = call
            actions += cancel(call.handle, reason: .cancelled, error: RPCError(code: code, message: "response: \(error.message)"))
            return
        }
        guard let message else {
            calls[callID] = call
            acknowledge(callID: callID, bytes: wireSize)  // a fragment goes back to the window at once
            return
        }
        if call.kind.isSingleResponse {
            if call.singleResponse == nil { call.singleResponse = message } else { call.extraResponse = true }
            calls[callID] = call
            acknowledge(callID: callID, bytes: wireSize)
        } else {
            calls[callID] = call
            // Stream messages return to the window when the application consumes them.
            actions.append(.message(call.handle, InboundMessage(bytes: message, wireSize: wireSize)))
        }
    }

    private mutating func finish(_ call: ClientCallState, trailers: TrailersHead, _ actions: inout [ClientConnectionAction]) {
        let outcome: ClientConnectionAction
        if let error = RPCError(trailers: trailers) {
            outcome = .failed(call.handle, error)
        } else if call.kind.isSingleResponse, call.extraResponse || call.singleResponse == nil {
            outcome = .failed(call.handle, RPCError(
                code: .internal,
                message: call.extraResponse ? "server sent more than one response message" : "server sent no response message"))
        } else {
            outcome = .succeeded(call.handle, UnaryResponse(
                message: call.singleResponse ?? ByteBuffer(), initialMetadata: call.initialMetadata,
                trailingMetadata: trailers.metadata))
        }
        end(call, with: outcome, &actions)
    }

    /// Returns consumed response bytes of a stream to the server's window when enough piled up.
    mutating func acknowledge(_ handle: ClientCallHandle, bytes: Int) {
        guard let id = callIDs[handle] else { return }
        acknowledge(callID: id, bytes: bytes)
    }

    private mutating func acknowledge(callID: UInt32, bytes: Int) {
        guard bytes > 0, calls[callID] != nil, let increment = windows.consumed(callID: callID, bytes: bytes) else { return }
        queue.appendControl { FrameWriter.writeWindow(callID: callID, increment: increment, into: &$0) }
    }

    private mutating func protocolError(_ error: WireError, _ actions: inout [ClientConnectionAction]) {
        closedError = RPCError(code: .internal, message: "protocol error from server: \(error)")
        let goAway = GoAway(lastCallID: 0, code: error.goAwayCode, debugMessage: error.message)
        queue.appendControl { FrameWriter.writeGoAway(goAway, into: &$0) }
        actions.append(.close)
    }

    // MARK: - Call bookkeeping

    /// Removes an ended call; the next waiting calls start, and a draining connection closes
    /// once none is left.
    mutating func end(_ call: ClientCallState, with outcome: ClientConnectionAction, _ actions: inout [ClientConnectionAction]) {
        forget(call)
        actions.append(outcome)
        startWaitingCalls(&actions)
        closeIfDrained(&actions)
    }

    private mutating func forget(_ call: ClientCallState) {
        calls[call.id] = nil
        callIDs[call.handle] = nil
        windows.forget(callID: call.id)
        // Request frames still waiting for a WINDOW are of no use once the call has ended.
        queue.discard(callID: call.id)
        queue.forget(callID: call.id)
    }

    private func closeIfDrained(_ actions: inout [ClientConnectionAction]) {
        if phase == .draining, calls.isEmpty { actions.append(.close) }
    }

    mutating func makeHandle() -> ClientCallHandle {
        defer { nextHandle += 1 }
        return ClientCallHandle(rawValue: nextHandle)
    }

    mutating func enqueue(_ pending: PendingCall) { waitingToStart.append(pending) }

    mutating func removeWaiting(_ handle: ClientCallHandle) -> Bool {
        guard let index = waitingToStart.firstIndex(where: { $0.handle == handle }) else { return false }
        waitingToStart.remove(at: index)
        return true
    }

    mutating func startWaitingCalls(_ actions: inout [ClientConnectionAction]) {
        guard phase == .ready, let settings else { return }
        while !waitingToStart.isEmpty, calls.count < settings.peer.maxConcurrentCalls {
            send(waitingToStart.removeFirst(), &actions)
        }
    }

    mutating func register(_ call: ClientCallState) {
        calls[call.id] = call
        callIDs[call.handle] = call.id
    }

    mutating func setRequestClosed(callID: UInt32) { calls[callID]?.requestClosed = true }

    mutating func addPing() -> UInt64 {
        defer { nextPingID += 1 }
        pings.insert(nextPingID)
        return nextPingID
    }
}

/// One open call's wire state.
struct ClientCallState {
    let id: UInt32
    let handle: ClientCallHandle
    let kind: CallKind
    var requestClosed: Bool
    var assembler = MessageAssembler()
    var initialMetadata = Metadata()
    var singleResponse: ByteBuffer?
    var extraResponse = false
}

/// A call submitted but not yet on the wire: the HELLO has not come, or the server's limit of
/// concurrent calls is reached.
struct PendingCall {
    let handle: ClientCallHandle
    let kind: CallKind
    let head: CallHead
    let message: ByteBuffer?
    let endStream: Bool
    let compress: Bool
}
