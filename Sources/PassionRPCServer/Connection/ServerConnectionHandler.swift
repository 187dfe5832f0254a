import CoreMetrics
import Logging
import NIOCore
import PassionTLS
import PassionWire
import Tracing

/// Serves one client connection: hands every event to its `ServerConnectionMachine` and carries
/// out what it answers (write the frames it queued, start or cancel call tasks, arm one timer
/// for its next deadline, pause reading, close). All protocol decisions are the machine's.
///
/// Writes of one event-loop turn are coalesced into one flush.
final class ServerConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var machine: ServerConnectionMachine
    private let authenticator: any Authenticator
    private let metrics: ServerMetrics
    private let slowCallThreshold: Duration?
    private let tracer: (any Tracer)?
    private var logger: Logger
    private var context: ChannelHandlerContext?
    private var executor: EventLoopTaskExecutor?
    private var runtimes: [UInt32: ServerCallRuntime] = [:]
    private var writeWaiters = WriteWaiters()
    private var timer: Scheduled<Void>?
    private var timerDeadline: MonotonicInstant?
    private var flushScheduled = false
    private var readPending = false
    private var started = false
    private var peer = "unknown"
    private var peerCertificate: PeerCertificateNames?

    /// Bytes written per flush when fragments wait: large enough for throughput, small enough
    /// that other calls' frames interleave.
    private static let flushSize = 256 * 1024

    init(
        configuration: ServerConnectionConfiguration, router: RPCRouter, authenticator: any Authenticator,
        budget: ServerMemoryBudget? = nil, metrics: ServerMetrics = .disabled, tracer: (any Tracer)? = nil, logger: Logger
    ) {
        self.tracer = tracer
        self.machine = ServerConnectionMachine(
            configuration: configuration, router: router, budget: budget, metrics: metrics, now: .now)
        self.metrics = metrics
        self.slowCallThreshold = configuration.slowCallThreshold
        self.authenticator = authenticator
        self.logger = logger
    }

    // MARK: - Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.executor = EventLoopTaskExecutor(eventLoop: context.eventLoop)
        if let address = context.channel.remoteAddress {
            peer = "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        }
        logger[metadataKey: "peer"] = "\(peer)"
        if context.channel.isActive { start() }
    }

    /// The context holds this handler and this handler held the context: without letting go
    /// here, every closed connection stayed in memory with its pipeline and buffers.
    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
        self.executor = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        start()
        context.fireChannelActive()
    }

    private func start() {
        guard !started else { return }
        started = true
        metrics.connectionsOpen.increment()
        logger.debug("connection accepted")
        // The server announces its settings at once; TLS holds the bytes until its handshake is done.
        machine.start()
        flushNow()
        updateTimer()
    }

    func channelInactive(context: ChannelHandlerContext) {
        apply(machine.inputClosed(now: .now))
        if started { metrics.connectionsOpen.decrement() }
        for runtime in runtimes.values { runtime.cancel(RPCError(code: .unavailable, message: "connection closed")) }
        writeWaiters.failAll(ChannelError.ioOnClosedChannel)
        timer?.cancel()
        timer = nil
        logger.debug("connection closed")
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let handshake = event as? TLSHandshakeCompleted {
            peerCertificate = handshake.peerCertificate
            logger.debug("TLS established", metadata: [
                "tls": "\(handshake.protocolVersion) \(handshake.cipher)", "alpn": "\(handshake.applicationProtocol ?? "-")",
            ])
        } else if event is ChannelShouldQuiesceEvent {
            apply(machine.shutdown(now: .now))
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A peer that vanishes without closing is routine; TLS and protocol failures are not.
        if error is TLSError || error is WireError {
            logger.info("connection error", metadata: ["error": "\(error)"])
        } else {
            logger.debug("connection error", metadata: ["error": "\(error)"])
        }
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { scheduleFlush() }
        context.fireChannelWritabilityChanged()
    }

    /// Reading pauses while the client does not take its responses (the machine says when).
    func read(context: ChannelHandlerContext) {
        if machine.isReading {
            context.read()
        } else {
            readPending = true
        }
    }

    // MARK: - Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let before = machine.phase
        let bytes = unwrapInboundIn(data)
        metrics.wireBytesReceived.increment(by: bytes.readableBytes)
        apply(machine.receive(bytes, now: .now))
        if machine.phase == .closing, before != .closing {
            logger.info("protocol error, closing", metadata: ["lastCallID": "\(machine.highestCallID)"])
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushNow()
        context.fireChannelReadComplete()
    }

    // MARK: - Actions

    /// Carries out what the machine asked, then writes its frames and re-arms its timer.
    private func apply(_ actions: [ServerConnectionAction]) {
        var close = false
        for action in actions {
            switch action {
            case .startCall(let start):
                startCall(start)
            case .deliverRequest(let id, let message):
                runtimes[id]?.request?.succeed(message)
                runtimes[id]?.request = nil
            case .yieldRequest(let id, let message):
                _ = runtimes[id]?.source?.yield(message)
            case .finishRequests(let id, let error):
                if let error { runtimes[id]?.source?.finish(error) } else { runtimes[id]?.source?.finish() }
            case .cancelCall(let id, let error):
                runtimes[id]?.cancel(error)
            case .shutdownCalls(let ids):
                for id in ids { runtimes[id]?.context.requestShutdown() }
            case .resumeWriters:
                resumeWriters()
            case .setReading(let reading):
                if reading, readPending {
                    readPending = false
                    context?.read()
                }
            case .close:
                close = true
            }
        }
        if close {
            flushNow()
            context?.close(promise: nil)
            return
        }
        if inspect({ $0.hasOutput }) { scheduleFlush() }
        updateTimer()
    }

    private func startCall(_ start: ServerCallStart) {
        guard let context, let executor else { return }
        let descriptor = start.route.descriptor
        let serverContext = ServerContext(
            method: descriptor, requestMetadata: start.head.metadata, deadline: start.deadline?.continuousInstant, peer: peer,
            peerCertificate: peerCertificate)
        let runtime = ServerCallRuntime(id: start.id, context: serverContext)
        let loop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: loop)
        let id = start.id
        var request: EventLoopFuture<ByteBuffer>?
        var stream: MessageStream?
        if descriptor.kind.isSingleRequest {
            let promise = loop.makePromise(of: ByteBuffer.self)
            runtime.request = promise
            request = promise.futureResult
        } else {
            let (messages, source) = MessageStream.make(onConsumed: { wireSize, size in
                loop.execute { handler.value.apply(handler.value.machine.consumed(id, wireSize: wireSize, size: size)) }
            })
            runtime.source = source
            stream = messages
        }
        let writer = descriptor.kind.isSingleResponse ? nil : MessageWriter(sink: ServerResponseSink(handler: handler, callID: id))
        let credentials = CallCredentials(
            method: descriptor, metadata: start.head.metadata, peer: peer, peerCertificate: peerCertificate)
        let authenticator = self.authenticator
        let metrics = self.metrics
        let tracer = self.tracer
        let route = start.route
        runtimes[id] = runtime
        runtime.task = Task(executorPreference: executor) {
            let outcome = await ServerCallRunner.run(
                route: route, context: serverContext, credentials: credentials, authenticator: authenticator, metrics: metrics, tracer: tracer, request: request,
                stream: stream, writer: writer,
                authenticated: { loop.execute { handler.value.apply(handler.value.machine.authenticated(id)) } })
            if loop.inEventLoop {
                handler.value.finished(id, outcome)
            } else {
                loop.execute { handler.value.finished(id, outcome) }
            }
        }
    }

    private func finished(_ id: UInt32, _ outcome: ServerCallOutcome) {
        // A status the machine sent first (deadline, client cancel) is what the client saw.
        let call = machine.calls.index(forKey: id).map { index in machine.peek(index) { (startedAt: $0.startedAt, sentEarlier: $0.status) } }
        let runtime = runtimes.removeValue(forKey: id)
        runtime?.release()
        apply(machine.handlerFinished(id, outcome, now: .now))
        resumeWriters()
        if let runtime, let call {
            logCall(runtime, since: call.startedAt, code: call.sentEarlier ?? outcome.error?.code ?? .ok, error: outcome.error)
        }
    }

    /// One line per call that failed or was slow. Never the request, the response or the
    /// credentials: the status message only for server faults, whose text is ours.
    private func logCall(_ runtime: ServerCallRuntime, since startedAt: MonotonicInstant, code: StatusCode, error: RPCError?) {
        let duration = startedAt.duration(to: .now)
        // A stream's length is its client's choice (a Subscribe lasts hours): only calls that
        // answer once can be slow.
        let slow = runtime.context.method.kind.isSingleResponse && (slowCallThreshold.map { duration >= $0 } ?? false)
        guard code != .ok || slow else { return }
        let context = runtime.context
        var metadata: Logger.Metadata = [
            "method": "\(context.method.fullName)", "code": "\(code.name)",
            "duration_ms": "\(Self.milliseconds(duration))", "principal": "\(context.principal.kind.rawValue)",
            "call_id": "\(runtime.id)",
        ]
        if let trace = TraceContext(metadata: context.requestMetadata) { metadata["trace_id"] = "\(trace.traceIDHex)" }
        if slow { metadata["slow"] = "true" }
        switch code {
        case .ok:
            logger.warning("slow call", metadata: metadata)
        case .internal, .unknown, .dataLoss:
            if let error { metadata["error"] = "\(error.message)" }
            logger.error("call failed", metadata: metadata)
        default:
            // The caller's mistakes (NOT_FOUND, INVALID_ARGUMENT, …) are routine: info, not error.
            logger.info("call failed", metadata: metadata)
        }
    }

    private static func milliseconds(_ duration: Duration) -> String {
        let micros = duration.microseconds
        return "\(micros / 1000).\(String(micros % 1000 + 1000).dropFirst())"
    }

    /// Queues one response message of a stream; returns a future when the writer must wait for
    /// the socket or for its call's frames to leave.
    func writeResponse(_ id: UInt32, _ message: ByteBuffer, compress: Bool) throws -> EventLoopFuture<Void>? {
        guard let context, let runtime = runtimes[id] else { throw RPCError(code: .cancelled, message: "the call has ended") }
        let (result, actions) = machine.writeResponse(
            id, message: message, compress: compress && runtime.context.compressResponses,
            initialMetadata: runtime.context.initialMetadata)
        apply(actions)
        switch result {
        case .ended(let error):
            throw error
        case .queued where context.channel.isWritable:
            return nil
        case .queued, .wait:
            let promise = context.eventLoop.makePromise(of: Void.self)
            writeWaiters.add(callID: id, promise: promise)
            return promise.futureResult
        }
    }

    private func resumeWriters() {
        // Most turns have no writer waiting: then nothing is read from the machine at all.
        guard !writeWaiters.isEmpty else { return }
        let queue = machine.queue
        writeWaiters.resume(isWritable: context?.channel.isWritable == true, queue: queue) { id in
            self.machine.calls[id].map { $0.handlerRunning && !$0.responseClosed } ?? false
        }
    }

    // MARK: - Output and time

    private func scheduleFlush() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute { handler.value.flushNow() }
    }

    private func flushNow() {
        flushScheduled = false
        guard let context else { return }
        let (output, actions) = machine.takeOutput(limit: Self.flushSize, now: .now)
        if let output {
            metrics.wireBytesSent.increment(by: output.readableBytes)
            context.writeAndFlush(wrapOutboundOut(output), promise: nil)
        }
        if !actions.isEmpty { apply(actions) }
        guard context.channel.isWritable else { return }  // a writability change resumes
        // Frames that wait only for a WINDOW are released by the WINDOW, not polled.
        if output != nil, machine.queue.hasPending { scheduleFlush() }
        resumeWriters()
    }

    /// One timer, at the machine's next deadline. A deadline that moved later (every read moves
    /// the keepalive one) keeps the armed timer: it fires early, finds nothing due, and re-arms,
    /// which costs far less than re-scheduling on every read.
    private func updateTimer() {
        guard let context, let next = inspect({ $0.nextDeadline }) else { return }
        if let armed = timerDeadline, armed <= next { return }
        timer?.cancel()
        timerDeadline = next
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let delay = max(MonotonicInstant.now.duration(to: next), .zero)
        timer = context.eventLoop.scheduleTask(in: TimeAmount(delay)) {
            handler.value.timerFired()
        }
    }

    /// Reads the machine where it lives. A getter called on a struct stored in a class copies
    /// the whole struct first (every reference in it retained and released): after every event,
    /// that was about 4% of a call's server CPU.
    private func inspect<Value>(_ read: (inout ServerConnectionMachine) -> Value) -> Value {
        read(&machine)
    }

    private func timerFired() {
        timerDeadline = nil
        timer = nil
        apply(machine.tick(now: .now))
    }
}

@available(*, unavailable)
extension ServerConnectionHandler: Sendable {}
