import Logging
import NIOCore
import PassionTLS
import PassionWire

/// Serves one client connection: reads frames, runs each call's handler as a task on this
/// connection's event loop, and writes responses, coalescing all writes of one loop turn into
/// one flush.
///
/// Wrong input comes in three kinds, treated differently:
/// - the peer broke the protocol (bad preface, malformed or unexpected frame, call id reuse,
///   oversize frame, control-frame flood): GOAWAY with the reason, then close;
/// - one call's input is bad (oversize or undecodable message, too much metadata, wrong message
///   count): that call ends with a status, the connection serves on;
/// - frames for calls that already ended (a CANCEL racing a response): ignored.
final class ServerConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case awaitingPreface
        case awaitingHello
        case ready
        /// GOAWAY sent: calls up to `highestCallID` finish, new ones are refused.
        case draining
        case closed
    }

    private let configuration: ServerConnectionConfiguration
    private let router: RPCRouter
    private let authenticator: any Authenticator
    private var logger: Logger

    private var state: State = .awaitingPreface
    private var context: ChannelHandlerContext?
    private var executor: EventLoopTaskExecutor?
    private var processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxPayloadSize: 64 * 1024))
    private var prefaceBuffer: ByteBuffer?
    private var settings: NegotiatedSettings?
    private var writer: FrameWriter?
    private let inflater = Inflater()
    private var queue = OutboundQueue()
    private var flushScheduled = false

    private var calls: [UInt32: ServerCall] = [:]
    private var highestCallID: UInt32 = 0
    private var windows = InboundWindows(initialWindow: 1024 * 1024)
    private var writeWaiters = WriteWaiters()

    private var pingBucket: TokenBucket
    private var cancelBucket: TokenBucket
    private var handshakeTimer: Scheduled<Void>?
    private var idleTimer: Scheduled<Void>?
    private var keepaliveTask: RepeatedTask?
    private var graceTimer: Scheduled<Void>?
    private var lastReadAt = NIODeadline.now()
    private var pingSentAt: NIODeadline?
    private var peer = "unknown"
    private var peerCertificate: PeerCertificateNames?

    init(
        configuration: ServerConnectionConfiguration, router: RPCRouter, authenticator: any Authenticator,
        logger: Logger
    ) {
        self.configuration = configuration
        self.router = router
        self.authenticator = authenticator
        self.logger = logger
        let pingInterval = max(Double(configuration.settings.minPingIntervalMillis) / 1000, 0.001)
        self.pingBucket = TokenBucket(capacity: configuration.pingBurst, ratePerSecond: 1 / pingInterval)
        self.cancelBucket = TokenBucket(
            capacity: configuration.cancelBurst, ratePerSecond: Double(configuration.cancelRatePerSecond))
        self.processor = NIOSingleStepByteToMessageProcessor(
            FrameDecoder(maxPayloadSize: configuration.settings.maxFrameSize))
    }

    /// The HELLO tells clients the idle timeout this connection really applies.
    private var announcedSettings: ConnectionSettings {
        var settings = configuration.settings
        settings.idleTimeoutMillis = configuration.idleTimeout.map {
            Int($0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000)
        } ?? 0
        return settings
    }

    // MARK: - Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.executor = EventLoopTaskExecutor(eventLoop: context.eventLoop)
        self.queue = OutboundQueue(allocator: context.channel.allocator)
        if let address = context.channel.remoteAddress {
            peer = "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        }
        logger[metadataKey: "peer"] = "\(peer)"
        if context.channel.isActive { start(context: context) }
    }

    /// The context holds this handler and this handler held the context: without letting go
    /// here, every closed connection stayed in memory with its pipeline and buffers.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.executor = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard handshakeTimer == nil else { return }
        logger.debug("connection accepted")
        // The server announces its settings at once; TLS holds the bytes until its handshake is done.
        let hello = announcedSettings.hello
        queue.appendControl { FrameWriter.writeHello(hello, into: &$0) }
        flushNow()
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        handshakeTimer = context.eventLoop.scheduleTask(in: .init(configuration.handshakeTimeout)) {
            let handler = loopBound.value
            guard case .awaitingPreface = handler.state else {
                if case .awaitingHello = handler.state { handler.handshakeTimedOut() }
                return
            }
            handler.handshakeTimedOut()
        }
    }

    private func handshakeTimedOut() {
        logger.info("handshake timed out")
        context?.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        handshakeTimer?.cancel()
        idleTimer?.cancel()
        keepaliveTask?.cancel()
        graceTimer?.cancel()
        for call in calls.values { call.abort(with: CancellationError()) }
        writeWaiters.failAll(ChannelError.ioOnClosedChannel)
        logger.debug("connection closed")
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let handshake = event as? TLSHandshakeCompleted {
            peerCertificate = handshake.peerCertificate
            logger.debug("TLS established", metadata: [
                "tls": "\(handshake.protocolVersion) \(handshake.cipher)",
                "alpn": "\(handshake.applicationProtocol ?? "-")",
            ])
        } else if event is ChannelShouldQuiesceEvent {
            beginGracefulShutdown()
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
        if context.channel.isWritable {
            scheduleFlush()
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: - Flow control

    /// Returns consumed bytes of `callID` to the client's window when enough have piled up.
    private func acknowledge(callID: UInt32, bytes: Int) {
        guard bytes > 0, calls[callID] != nil, let increment = windows.consumed(callID: callID, bytes: bytes) else { return }
        queue.appendControl { FrameWriter.writeWindow(callID: callID, increment: increment, into: &$0) }
        scheduleFlush()
    }

    // MARK: - Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        lastReadAt = .now()
        do {
            if case .awaitingPreface = state {
                guard try consumePreface(&bytes) else { return }
            }
            guard case .closed = state else {
                try processor.process(buffer: bytes) { frame in
                    try self.handle(frame)
                }
                return
            }
        } catch let error as WireError {
            connectionError(error)
        } catch {
            connectionError(WireError(.malformedFrame, "\(error)"))
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushNow()
        context.fireChannelReadComplete()
    }

    private func consumePreface(_ bytes: inout ByteBuffer) throws -> Bool {
        if var buffered = prefaceBuffer {
            buffered.writeBuffer(&bytes)
            bytes = buffered
            prefaceBuffer = nil
        }
        guard try ConnectionPreface.consume(&bytes) else {
            prefaceBuffer = bytes
            return false
        }
        state = .awaitingHello
        return true
    }

    private func handle(_ frame: Frame) throws {
        switch state {
        case .awaitingHello:
            guard frame.type == .hello else {
                throw WireError(.unexpectedFrame, "expected HELLO, got \(frame.type)")
            }
            try receiveHello(frame)
        case .ready, .draining:
            try dispatch(frame)
        case .awaitingPreface, .closed:
            break
        }
    }

    private func receiveHello(_ frame: Frame) throws {
        var payload = frame.payload
        let peerSettings = try ConnectionSettings(peer: try Hello.read(from: &payload))
        let negotiated = NegotiatedSettings(local: announcedSettings, peer: peerSettings)
        settings = negotiated
        writer = FrameWriter(settings: negotiated)
        windows = InboundWindows(initialWindow: negotiated.local.initialWindowSize)
        queue.initialWindow = negotiated.peer.initialWindowSize
        state = .ready
        handshakeTimer?.cancel()
        handshakeTimer = nil
        armIdleTimer()
        startKeepalive()
    }

    private func dispatch(_ frame: Frame) throws {
        switch frame.type {
        case .call:
            try receiveCall(frame)
        case .message:
            try receiveMessage(frame)
        case .halfClose:
            try withCall(frame.callID) { call in try self.closeRequest(call) }
        case .cancel:
            guard cancelBucket.take() else {
                throw WireError(.enhanceYourCalm, "too many cancelled calls")
            }
            try withCall(frame.callID) { call in
                call.responseClosed = true
                self.queue.discard(callID: call.id)
                call.abort(with: RPCError(code: .cancelled, message: "cancelled by the client"))
                self.releaseIfIdle(call)
            }
        case .ping:
            guard frame.payload.readableBytes == 8 else { throw WireError(.malformedFrame, "PING must carry 8 bytes") }
            guard pingBucket.take() else { throw WireError(.enhanceYourCalm, "too many pings") }
            queue.appendControl {
                $0.writeFrameHeader(type: .pong, flags: [], callID: 0, payloadLength: 8)
                $0.writeImmutableBuffer(frame.payload)
            }
        case .pong:
            pingSentAt = nil
        case .window:
            var payload = frame.payload
            guard payload.readableBytes == 4, let increment = payload.readInteger(as: UInt32.self), increment > 0 else {
                throw WireError(.malformedFrame, "WINDOW must carry a positive 4-byte increment")
            }
            try withCall(frame.callID) { call in
                self.queue.grant(callID: call.id, increment: Int(increment))
                self.scheduleFlush()
            }
        case .goAway:
            // The client will start no more calls; finish the open ones, then close.
            if case .ready = state { state = .draining }
            closeIfDrained()
        case .hello, .headers, .trailers:
            throw WireError(.unexpectedFrame, "\(frame.type) is not valid from a client here")
        default:
            guard frame.flags.contains(.ignorable) else {
                throw WireError(.unknownFrameType, "unknown frame type \(frame.type)")
            }
        }
    }

    /// Runs `body` for a live call; frames of ended calls are dropped, frames of calls never
    /// started are a protocol error.
    private func withCall(_ id: UInt32, _ body: (ServerCall) throws -> Void) throws {
        if let call = calls[id] {
            try body(call)
        } else if id == 0 || id > highestCallID {
            throw WireError(.unexpectedFrame, "frame for call \(id), which was never started")
        }
    }

    private func receiveCall(_ frame: Frame) throws {
        guard frame.callID > highestCallID else {
            throw WireError(.callIDReuse, "call id \(frame.callID) is not above \(highestCallID)")
        }
        highestCallID = frame.callID
        guard case .ready = state else {
            refuse(frame.callID, "server is shutting down")
            return
        }
        guard calls.count < configuration.settings.maxConcurrentCalls else {
            guard cancelBucket.take() else { throw WireError(.enhanceYourCalm, "too many refused calls") }
            refuse(frame.callID, "too many concurrent calls")
            return
        }
        var payload = frame.payload
        let head: CallHead
        do {
            head = try CallHead.read(from: &payload, metadataLimit: configuration.settings.maxMetadataSize)
        } catch let error as WireError where !error.isConnectionError {
            finishUnstarted(frame.callID, RPCError(code: .resourceExhausted, message: error.message))
            return
        }
        guard let route = router.route(head.method) else {
            finishUnstarted(frame.callID, router.unroutable(head.method))
            return
        }
        let deadline: ContinuousClock.Instant? =
            head.timeoutMicroseconds > 0
            ? .now + .microseconds(Int64(clamping: head.timeoutMicroseconds)) : nil
        let serverContext = ServerContext(
            method: route.descriptor, requestMetadata: head.metadata, deadline: deadline, peer: peer,
            peerCertificate: peerCertificate)
        let call = ServerCall(id: frame.callID, route: route, context: serverContext)
        calls[call.id] = call
        idleTimer?.cancel()
        idleTimer = nil
        if head.timeoutMicroseconds > 0, let context {
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            let boundCall = NIOLoopBound(call, eventLoop: context.eventLoop)
            call.deadlineTimer = context.eventLoop.scheduleTask(
                in: .microseconds(Int64(clamping: head.timeoutMicroseconds))
            ) {
                loopBound.value.deadlineExceeded(boundCall.value)
            }
        }
        if !route.descriptor.kind.isSingleRequest { startStreaming(call) }
        if frame.flags.contains(.hasMessage) {
            guard !frame.flags.contains(.more) else {
                throw WireError(.malformedFrame, "a CALL's inline message must be whole (MORE is not allowed)")
            }
            try receiveMessageBytes(payload, flags: frame.flags, call: call, wireSize: 0)
        }
        if frame.flags.contains(.endStream), calls[call.id] != nil {
            try closeRequest(call)
        }
    }

    private func receiveMessage(_ frame: Frame) throws {
        try withCall(frame.callID) { call in
            try self.windows.received(callID: call.id, bytes: frame.payload.readableBytes)
            try self.receiveMessageBytes(frame.payload, flags: frame.flags, call: call, wireSize: frame.payload.readableBytes)
            if frame.flags.contains(.endStream), !frame.flags.contains(.more), self.calls[call.id] != nil {
                try self.closeRequest(call)
            }
        }
    }

    /// `wireSize` is the MESSAGE payload this frame spent of the call's window.
    private func receiveMessageBytes(_ bytes: ByteBuffer, flags: FrameFlags, call: ServerCall, wireSize: Int) throws {
        guard !call.requestClosed else {
            throw WireError(.unexpectedFrame, "message after the end of call \(call.id)'s request")
        }
        guard let settings, let context else { return }
        let message: ByteBuffer?
        do {
            message = try call.assembler.append(
                bytes, flags: flags, settings: settings, inflater: inflater, allocator: context.channel.allocator)
        } catch let error as WireError where !error.isConnectionError {
            let code: StatusCode = error.kind == .messageTooLarge ? .resourceExhausted : .internal
            failCall(call, RPCError(code: code, message: error.message))
            return
        }
        // Fragments of an unfinished message are bounded by the message size limit, not the
        // window: returning them at once lets a message larger than the window arrive.
        guard let message else {
            acknowledge(callID: call.id, bytes: wireSize)
            return
        }
        guard !call.responseClosed else { return }
        if call.route.descriptor.kind.isSingleRequest {
            acknowledge(callID: call.id, bytes: wireSize)
            guard call.singleRequest == nil else {
                failCall(call, RPCError(
                    code: .unimplemented, message: "\(call.route.descriptor.fullName) takes exactly one request message"))
                return
            }
            call.singleRequest = message
        } else if let source = call.requestSource {
            _ = source.yield(InboundMessage(bytes: message, wireSize: wireSize))
        }
    }

    private func closeRequest(_ call: ServerCall) throws {
        guard !call.requestClosed else {
            throw WireError(.unexpectedFrame, "call \(call.id) half-closed twice")
        }
        guard !call.assembler.isAssembling else {
            throw WireError(.unexpectedFrame, "call \(call.id) half-closed inside a fragmented message")
        }
        call.requestClosed = true
        if call.route.descriptor.kind.isSingleRequest {
            guard !call.responseClosed else { return }
            guard let request = call.singleRequest else {
                failCall(call, RPCError(
                    code: .unimplemented, message: "\(call.route.descriptor.fullName) takes exactly one request message"))
                return
            }
            call.singleRequest = nil
            startSingle(call, request: request)
        } else {
            call.requestSource?.finish()
        }
    }

    // MARK: - Running handlers

    private func startSingle(_ call: ServerCall, request: ByteBuffer) {
        switch call.route.method {
        case .unary(let handler):
            run(call) { context in
                .message(try await handler(request, context))
            }
        case .serverStreaming(let handler):
            let writer = makeWriter(call)
            run(call) { context in
                try await handler(request, context, writer)
                return .noMessage
            }
        case .clientStreaming, .bidirectional:
            break
        }
    }

    private func startStreaming(_ call: ServerCall) {
        guard let context else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let id = call.id
        let (stream, source) = MessageStream.make(onConsumed: { bytes in
            eventLoop.execute { loopBound.value.acknowledge(callID: id, bytes: bytes) }
        })
        call.requestSource = source
        switch call.route.method {
        case .clientStreaming(let handler):
            run(call) { context in .message(try await handler(stream, context)) }
        case .bidirectional(let handler):
            let writer = makeWriter(call)
            run(call) { context in
                try await handler(stream, context, writer)
                return .noMessage
            }
        case .unary, .serverStreaming:
            break
        }
    }

    private enum HandlerResult: Sendable {
        case message(ByteBuffer)
        case noMessage
    }

    private func run(_ call: ServerCall, _ body: @escaping @Sendable (ServerContext) async throws -> HandlerResult) {
        guard let context, let executor else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let serverContext = call.context
        let authenticator = self.authenticator
        let descriptor = call.route.descriptor
        let credentials = CallCredentials(
            method: descriptor, metadata: serverContext.requestMetadata, peer: serverContext.peer,
            peerCertificate: serverContext.peerCertificate)
        let eventLoop = context.eventLoop
        let boundCall = NIOLoopBound(call, eventLoop: eventLoop)
        call.task = Task(executorPreference: executor) {
            let result: Result<HandlerResult, any Error>
            do {
                serverContext.principal = try await authenticator.principal(for: credentials)
                result = .success(try await body(serverContext))
            } catch {
                result = .failure(error)
            }
            if eventLoop.inEventLoop {
                loopBound.value.handlerFinished(boundCall.value, result)
            } else {
                eventLoop.execute { loopBound.value.handlerFinished(boundCall.value, result) }
            }
        }
    }

    private func handlerFinished(_ call: ServerCall, _ result: Result<HandlerResult, any Error>) {
        call.handlerDone = true
        if !call.responseClosed {
            switch result {
            case .success(.message(let message)):
                if let tooLarge = responseTooLarge(message) {
                    sendTrailers(call, tooLarge, message: nil)
                } else {
                    sendTrailers(call, RPCError?.none, message: message)
                }
            case .success(.noMessage):
                sendTrailers(call, nil, message: nil)
            case .failure(let error):
                let status = RPCError(converting: error)
                if status.code == .internal || status.code == .unknown {
                    logger.error("handler failed", metadata: [
                        "method": "\(call.route.descriptor.fullName)", "error": "\(error)",
                    ])
                } else {
                    logger.debug("call failed", metadata: [
                        "method": "\(call.route.descriptor.fullName)", "status": "\(status.code)",
                    ])
                }
                sendTrailers(call, status, message: nil)
            }
        }
        release(call)
    }

    /// What a handler's error becomes on the wire. Unknown errors never leak their text.
    private func release(_ call: ServerCall) {
        call.deadlineTimer?.cancel()
        call.requestSource?.finish()
        calls[call.id] = nil
        windows.forget(callID: call.id)
        queue.forget(callID: call.id)
        if calls.isEmpty { armIdleTimer() }
        closeIfDrained()
    }

    /// A call cancelled before its handler started frees its slot at once.
    private func releaseIfIdle(_ call: ServerCall) {
        if call.task == nil { release(call) }
    }

    private func failCall(_ call: ServerCall, _ error: RPCError) {
        sendTrailers(call, error, message: nil)
        call.abort(with: error)
        releaseIfIdle(call)
    }

    private func deadlineExceeded(_ call: ServerCall) {
        guard calls[call.id] === call, !call.responseClosed else { return }
        failCall(call, RPCError(code: .deadlineExceeded, message: "deadline exceeded"))
    }

    private func finishUnstarted(_ id: UInt32, _ error: RPCError) {
        guard let writer else { return }
        let head = error.trailersHead()
        queue.append(callID: id) { writer.writeTrailers(callID: id, head: head, message: nil, compress: false, into: &$0) }
        scheduleFlush()
    }

    private func refuse(_ id: UInt32, _ text: String) {
        guard let writer else { return }
        queue.appendControl { writer.writeCancel(callID: id, reason: .refused, text: text, into: &$0) }
        scheduleFlush()
    }

    // MARK: - Outbound

    private func sendTrailers(_ call: ServerCall, _ error: RPCError?, message: ByteBuffer?) {
        guard let writer, !call.responseClosed else { return }
        call.responseClosed = true
        if case .closed = state { return }
        sendInitialMetadataIfNeeded(writer, call)
        var head = error?.trailersHead() ?? TrailersHead(status: 0)
        for entry in call.context.trailingMetadata { head.metadata.add(entry.key, bytes: entry.value) }
        // Whatever a handler put there, the frame must stay within the client's limits.
        head.fields = head.fields.sanitized(limit: metadataBudget / 2)
        head.metadata = head.metadata.sanitized(limit: metadataBudget / 2)
        let compress = call.context.compressResponses
        queue.append(callID: call.id) {
            writer.writeTrailers(callID: call.id, head: head, message: message, compress: compress, into: &$0)
        }
        scheduleFlush()
    }

    /// Metadata bytes a HEADERS or TRAILERS frame may carry: the client's limit, and small enough
    /// that status text and details still fit in one frame.
    private var metadataBudget: Int {
        guard let peer = settings?.peer else { return 8 * 1024 }
        return min(peer.maxMetadataSize, peer.maxFrameSize - TrailersHead.maxMessageBytes - 512)
    }

    private func sendInitialMetadataIfNeeded(_ writer: FrameWriter, _ call: ServerCall) {
        guard !call.headersSent else { return }
        call.headersSent = true
        let initial = call.context.initialMetadata.sanitized(limit: metadataBudget)
        guard !initial.isEmpty else { return }
        queue.append(callID: call.id) { writer.writeHeaders(callID: call.id, metadata: initial, into: &$0) }
    }

    private func makeWriter(_ call: ServerCall) -> MessageWriter {
        guard let context else { preconditionFailure("writer requested before handlerAdded") }
        return MessageWriter(sink: ServerResponseSink(
            handler: NIOLoopBound(self, eventLoop: context.eventLoop), call: NIOLoopBound(call, eventLoop: context.eventLoop)))
    }

    /// Queues one response message; returns a future when the caller must wait for writability.
    fileprivate func writeResponse(_ call: ServerCall, _ message: ByteBuffer, compress: Bool) throws -> EventLoopFuture<Void>? {
        guard let writer, let context, !call.responseClosed, calls[call.id] === call else {
            throw RPCError(code: .cancelled, message: "the call has ended")
        }
        if let tooLarge = responseTooLarge(message) { throw tooLarge }
        sendInitialMetadataIfNeeded(writer, call)
        let compressMessage = compress && call.context.compressResponses
        queue.append(callID: call.id) {
            writer.writeMessage(callID: call.id, message: message, endStream: false, compress: compressMessage, into: &$0)
        }
        scheduleFlush()
        // A stream waits while the socket is full or its own frames still queue (for fairness
        // or for the client's window).
        guard context.channel.isWritable, !queue.hasPending(callID: call.id) else {
            let promise = context.eventLoop.makePromise(of: Void.self)
            writeWaiters.add(callID: call.id, promise: promise)
            return promise.futureResult
        }
        return nil
    }

    /// A response the client announced it would not accept is never sent.
    private func responseTooLarge(_ message: ByteBuffer) -> RPCError? {
        guard let limit = settings?.peer.maxMessageSize, message.readableBytes > limit else { return nil }
        return RPCError(
            code: .resourceExhausted,
            message: "response of \(message.readableBytes) bytes exceeds the client's maximum message size \(limit)")
    }

    /// Coalesces writes: everything written during this loop turn goes out in one flush.
    private func scheduleFlush() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute { loopBound.value.flushNow() }
    }

    private func flushNow() {
        flushScheduled = false
        guard let context else { return }
        queue.release(upTo: Self.flushSize)
        let progressed = queue.output.readableBytes > 0
        if progressed {
            context.writeAndFlush(wrapOutboundOut(queue.takeOutput(allocator: context.channel.allocator)), promise: nil)
        }
        guard context.channel.isWritable else { return }  // writability change resumes
        // Frames that wait only for a WINDOW are rescheduled by the WINDOW, not polled.
        if progressed, queue.hasPending { scheduleFlush() }
        resumeWriters()
    }

    /// Bytes written per flush when fragments wait: large enough for throughput, small enough
    /// that other calls' frames interleave.
    private static let flushSize = 256 * 1024

    private func resumeWriters() {
        let calls = self.calls
        writeWaiters.resume(isWritable: context?.channel.isWritable == true, queue: queue) { calls[$0] != nil }
    }

    // MARK: - Connection management

    private func connectionError(_ error: WireError) {
        guard let context else { return }
        if case .closed = state { return }
        logger.info("protocol error, closing", metadata: ["error": "\(error)"])
        let goAway = GoAway(lastCallID: highestCallID, code: error.goAwayCode, debugMessage: error.message)
        queue.appendControl { FrameWriter.writeGoAway(goAway, into: &$0) }
        state = .closed
        flushNow()
        context.close(promise: nil)
    }

    /// Stops accepting calls: GOAWAY now, close once the open calls have finished or the grace
    /// period is over.
    func beginGracefulShutdown() {
        guard let context else { return }
        switch state {
        case .ready, .draining:
            break
        case .awaitingPreface, .awaitingHello:
            context.close(promise: nil)
            return
        case .closed:
            return
        }
        guard graceTimer == nil else { return }
        state = .draining
        let goAway = GoAway(lastCallID: highestCallID, code: .noError, debugMessage: "server shutting down")
        queue.appendControl { FrameWriter.writeGoAway(goAway, into: &$0) }
        flushNow()
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        graceTimer = context.eventLoop.scheduleTask(in: .init(configuration.shutdownGracePeriod)) {
            let handler = loopBound.value
            for call in handler.calls.values {
                call.abort(with: RPCError(code: .unavailable, message: "server shut down"))
            }
            handler.context?.close(promise: nil)
        }
        closeIfDrained()
    }

    private func closeIfDrained() {
        guard case .draining = state, calls.isEmpty, let context else { return }
        state = .closed
        flushNow()
        context.close(promise: nil)
    }

    private func armIdleTimer() {
        guard let timeout = configuration.idleTimeout, let context, case .ready = state else { return }
        idleTimer?.cancel()
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(in: .init(timeout)) {
            let handler = loopBound.value
            guard handler.calls.isEmpty, case .ready = handler.state else { return }
            handler.logger.debug("closing idle connection")
            let goAway = GoAway(lastCallID: handler.highestCallID, code: .noError, debugMessage: "idle")
            handler.queue.appendControl { FrameWriter.writeGoAway(goAway, into: &$0) }
            handler.state = .draining
            handler.closeIfDrained()
        }
    }

    private func startKeepalive() {
        guard let interval = configuration.keepaliveInterval, let context else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timeout = TimeAmount(configuration.keepaliveTimeout)
        let quiet = TimeAmount(interval)
        // Checked at a quarter of the shorter period, so both fire within 25% of their value.
        let period = TimeAmount.nanoseconds(max(min(quiet.nanoseconds, timeout.nanoseconds) / 4, 1_000_000))
        keepaliveTask = context.eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { _ in
            loopBound.value.checkKeepalive(quiet: quiet, timeout: timeout)
        }
    }

    private func checkKeepalive(quiet: TimeAmount, timeout: TimeAmount) {
        let now = NIODeadline.now()
        if let sent = pingSentAt {
            if now - sent > timeout {
                logger.info("keepalive timed out")
                context?.close(promise: nil)
            }
            return
        }
        if now - lastReadAt >= quiet {
            pingSentAt = now
            queue.appendControl { FrameWriter.writePing(.ping, data: UInt64(now.uptimeNanoseconds), into: &$0) }
            flushNow()
        }
    }
}

@available(*, unavailable)
extension ServerConnectionHandler: Sendable {}

/// One call's server-side state; confined to its connection's event loop.
final class ServerCall {
    let id: UInt32
    let route: RPCRouter.Route
    let context: ServerContext
    var assembler = MessageAssembler()
    var singleRequest: ByteBuffer?
    var requestSource: MessageStream.Producer.Source?
    var requestClosed = false
    /// Trailers were sent or the client cancelled: nothing more goes out for this call.
    var responseClosed = false
    var headersSent = false
    var handlerDone = false
    var task: Task<Void, Never>?
    var deadlineTimer: Scheduled<Void>?

    init(id: UInt32, route: RPCRouter.Route, context: ServerContext) {
        self.id = id
        self.route = route
        self.context = context
    }

    /// Stops the handler: its task is cancelled and its request stream ends with `error`.
    func abort(with error: any Error) {
        task?.cancel()
        requestSource?.finish(error)
        deadlineTimer?.cancel()
    }
}

@available(*, unavailable)
extension ServerCall: Sendable {}

/// The response side of a streaming call.
private struct ServerResponseSink: MessageSink {
    let handler: NIOLoopBound<ServerConnectionHandler>
    let call: NIOLoopBound<ServerCall>

    func write(_ message: ByteBuffer, compress: Bool) async throws {
        try await handler.eventLoop.runAndWait {
            try handler.value.writeResponse(call.value, message, compress: compress)
        }
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
