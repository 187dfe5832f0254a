import NIOCore
import PassionTLS
import PassionWire
import Synchronization

/// The client end of one connection: sends the preface and HELLO, waits for the server's
/// HELLO, then multiplexes calls. Confined to the channel's event loop.
final class ClientConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case starting
        case ready
        /// The server sent GOAWAY: no new calls; open ones finish.
        case draining
        case closed
    }

    private let localSettings: ConnectionSettings
    private var state: State = .starting
    private var context: ChannelHandlerContext?
    private var processor: NIOSingleStepByteToMessageProcessor<FrameDecoder>
    private var settings: NegotiatedSettings?
    private var writer: FrameWriter?
    private let inflater = Inflater()
    private var queue = OutboundQueue()
    private var flushScheduled = false
    private var nextCallID: UInt32 = 1
    private var calls: [UInt32: ClientCall] = [:]
    private var waitingToStart: [(ClientCall, CallHead, ByteBuffer?, Bool, Bool)] = []
    private var windows = InboundWindows(initialWindow: 1024 * 1024)
    private var writeWaiters = WriteWaiters()
    private var pings: [UInt64: EventLoopPromise<Duration>] = [:]
    private var nextPingID: UInt64 = 1
    let ready: EventLoopPromise<NegotiatedSettings>
    /// Set once the connection can take no new calls (GOAWAY or closed); readable from any thread.
    let flags = ConnectionFlags()
    private var isDraining: Bool {
        get { flags.isDraining }
        set { flags.isDraining = newValue }
    }
    var tlsInfo: TLSHandshakeCompleted?

    init(settings: ConnectionSettings, ready: EventLoopPromise<NegotiatedSettings>) {
        self.localSettings = settings
        self.processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxPayloadSize: settings.maxFrameSize))
        self.ready = ready
    }

    var openCalls: Int { calls.count + waitingToStart.count }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        queue = OutboundQueue(allocator: context.channel.allocator)
        if context.channel.isActive { sendPreface() }
    }

    /// Breaks the handler ↔ context cycle, so a closed connection is freed.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        sendPreface()
        context.fireChannelActive()
    }

    private var prefaceSent = false

    private func sendPreface() {
        guard !prefaceSent else { return }
        prefaceSent = true
        let hello = localSettings.hello
        queue.appendControl {
            $0.writeBytes(ConnectionPreface.bytes)
            FrameWriter.writeHello(hello, into: &$0)
        }
        flushNow()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let error = closedError ?? RPCError(code: .unavailable, message: "connection closed")
        shutDown(error)
        context.fireChannelInactive()
    }

    private var closedError: RPCError?

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let rpcError: RPCError
        switch error {
        case let tls as TLSError: rpcError = RPCError(code: .unavailable, message: tls.message)
        case let wire as WireError: rpcError = RPCError(code: .internal, message: "protocol error from server: \(wire)")
        default: rpcError = RPCError(code: .unavailable, message: "connection failed: \(error)")
        }
        if closedError == nil { closedError = rpcError }
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let handshake = event as? TLSHandshakeCompleted {
            tlsInfo = handshake
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func shutDown(_ error: RPCError) {
        if case .closed = state { return }
        state = .closed
        isDraining = true
        ready.fail(error)
        for (call, _, _, _, _) in waitingToStart { call.fail(error) }
        waitingToStart = []
        let open = calls
        calls = [:]
        for call in open.values { call.fail(error) }
        for promise in pings.values { promise.fail(error) }
        pings = [:]
        writeWaiters.failAll(error)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            scheduleFlush()
        }
        context.fireChannelWritabilityChanged()
    }

    private func resumeWriters() {
        let calls = self.calls
        writeWaiters.resume(isWritable: context?.channel.isWritable == true, queue: queue) { calls[$0] != nil }
    }

    /// Returns consumed response bytes of `callID` to the server's window when enough piled up.
    func acknowledge(callID: UInt32, bytes: Int) {
        guard bytes > 0, calls[callID] != nil, let increment = windows.consumed(callID: callID, bytes: bytes) else { return }
        queue.appendControl { FrameWriter.writeWindow(callID: callID, increment: increment, into: &$0) }
        scheduleFlush()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        do {
            try processor.process(buffer: bytes) { frame in try self.handle(frame) }
        } catch {
            let wire = error as? WireError ?? WireError(.malformedFrame, "\(error)")
            closedError = RPCError(code: .internal, message: "protocol error from server: \(wire)")
            let goAway = GoAway(lastCallID: 0, code: wire.goAwayCode, debugMessage: wire.message)
            queue.appendControl { FrameWriter.writeGoAway(goAway, into: &$0) }
            flushNow()
            context.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushNow()
        context.fireChannelReadComplete()
    }

    private func handle(_ frame: Frame) throws {
        if case .starting = state {
            guard frame.type == .hello || frame.type == .goAway else {
                throw WireError(.unexpectedFrame, "expected HELLO, got \(frame.type)")
            }
        }
        switch frame.type {
        case .hello:
            guard case .starting = state else { throw WireError(.unexpectedFrame, "second HELLO") }
            var payload = frame.payload
            let negotiated = NegotiatedSettings(
                local: localSettings, peer: try ConnectionSettings(peer: try Hello.read(from: &payload)))
            settings = negotiated
            writer = FrameWriter(settings: negotiated)
            windows = InboundWindows(initialWindow: negotiated.local.initialWindowSize)
            queue.initialWindow = negotiated.peer.initialWindowSize
            state = .ready
            ready.succeed(negotiated)
            startWaitingCalls()
        case .headers:
            guard let call = calls[frame.callID] else { return }
            var payload = frame.payload
            call.initialMetadata = try payload.readMetadata(limit: localSettings.maxMetadataSize)
        case .message:
            guard let call = calls[frame.callID] else { return }
            try windows.received(callID: call.id, bytes: frame.payload.readableBytes)
            try receiveMessage(frame.payload, flags: frame.flags, call: call, wireSize: frame.payload.readableBytes)
        case .trailers:
            guard let call = calls[frame.callID] else { return }
            var payload = frame.payload
            let head = try TrailersHead.read(from: &payload, metadataLimit: localSettings.maxMetadataSize)
            if frame.flags.contains(.hasMessage) {
                try receiveMessage(payload, flags: frame.flags, call: call, wireSize: 0)
            }
            calls[frame.callID] = nil
            call.finish(trailers: head)
            callFinished(frame.callID)
        case .cancel:
            guard let call = calls[frame.callID] else { return }
            var payload = frame.payload
            let reason = CancelReason(rawValue: payload.readInteger(as: UInt8.self) ?? 0)
            let text = payload.readString(length: payload.readableBytes) ?? ""
            calls[frame.callID] = nil
            call.fail(RPCError(
                code: reason == .refused ? .unavailable : .cancelled,
                message: text.isEmpty ? "call \(reason.description.lowercased()) by the server" : text,
                wasRefused: reason == .refused))
            callFinished(frame.callID)
        case .ping:
            queue.appendControl {
                $0.writeFrameHeader(type: .pong, flags: [], callID: 0, payloadLength: 8)
                $0.writeImmutableBuffer(frame.payload)
            }
        case .pong:
            var payload = frame.payload
            if let id = payload.readInteger(as: UInt64.self), let promise = pings.removeValue(forKey: id) {
                promise.succeed(.zero)
            }
        case .goAway:
            var payload = frame.payload
            let goAway = try GoAway.read(from: &payload)
            receiveGoAway(goAway)
        case .window:
            var payload = frame.payload
            guard payload.readableBytes == 4, let increment = payload.readInteger(as: UInt32.self), increment > 0 else {
                throw WireError(.malformedFrame, "WINDOW must carry a positive 4-byte increment")
            }
            if calls[frame.callID] != nil {
                queue.grant(callID: frame.callID, increment: Int(increment))
                scheduleFlush()
            }
        case .call, .halfClose:
            throw WireError(.unexpectedFrame, "\(frame.type) is not valid from a server")
        default:
            guard frame.flags.contains(.ignorable) else {
                throw WireError(.unknownFrameType, "unknown frame type \(frame.type)")
            }
        }
    }

    private func receiveGoAway(_ goAway: GoAway) {
        isDraining = true
        if case .closed = state { return }
        state = .draining
        let error = RPCError(
            code: .unavailable, message: "server sent GOAWAY (\(goAway.code)): \(goAway.debugMessage)",
            wasRefused: true)
        if goAway.code != .noError { closedError = RPCError(code: .unavailable, message: error.message) }
        ready.fail(error)
        for (call, _, _, _, _) in waitingToStart { call.fail(error) }
        waitingToStart = []
        for (id, call) in calls where id > goAway.lastCallID {
            calls[id] = nil
            call.fail(error)
        }
        if calls.isEmpty { context?.close(promise: nil) }
    }

    /// `wireSize` is the MESSAGE payload this frame spent of the call's window.
    private func receiveMessage(_ bytes: ByteBuffer, flags: FrameFlags, call: ClientCall, wireSize: Int) throws {
        guard let settings, let context else { return }
        let message: ByteBuffer?
        do {
            message = try call.assembler.append(
                bytes, flags: flags, settings: settings, inflater: inflater, allocator: context.channel.allocator)
        } catch let error as WireError where !error.isConnectionError {
            let code: StatusCode = error.kind == .messageTooLarge ? .resourceExhausted : .internal
            cancel(call, reason: .cancelled, error: RPCError(code: code, message: "response: \(error.message)"))
            return
        }
        // Fragments and single responses go back to the window at once; stream messages when
        // the application consumes them.
        guard let message else {
            acknowledge(callID: call.id, bytes: wireSize)
            return
        }
        if call.kind.isSingleResponse { acknowledge(callID: call.id, bytes: wireSize) }
        call.receive(InboundMessage(bytes: message, wireSize: call.kind.isSingleResponse ? 0 : wireSize))
    }

    // MARK: Calls

    /// Starts a call, or queues it while the server's call limit is reached.
    func start(_ call: ClientCall, head: CallHead, message: ByteBuffer?, endStream: Bool, compress: Bool) {
        switch state {
        case .starting:
            waitingToStart.append((call, head, message, endStream, compress))
            return
        case .draining, .closed:
            call.fail(RPCError(code: .unavailable, message: "connection is closing", wasRefused: true))
            return
        case .ready:
            break
        }
        if let settings, calls.count >= settings.peer.maxConcurrentCalls {
            waitingToStart.append((call, head, message, endStream, compress))
            return
        }
        send(call, head: head, message: message, endStream: endStream, compress: compress)
    }

    private func send(_ call: ClientCall, head: CallHead, message: ByteBuffer?, endStream: Bool, compress: Bool) {
        guard let writer, let settings else { return }
        // The CALL frame's header fields must fit in one frame of the server's size.
        let budget = min(settings.peer.maxMetadataSize, settings.peer.maxFrameSize - head.method.utf8.count - 16)
        do {
            try head.metadata.validate(limit: budget)
        } catch let error as WireError {
            call.fail(RPCError(code: .invalidArgument, message: error.message))
            return
        } catch {
            call.fail(RPCError(code: .invalidArgument, message: "invalid metadata"))
            return
        }
        if let message, let tooLarge = requestTooLarge(message) {
            call.fail(tooLarge)
            return
        }
        // Call ids never wrap: an exhausted connection takes no new calls and the pool opens another.
        guard nextCallID < UInt32.max else {
            isDraining = true
            call.fail(RPCError(code: .unavailable, message: "connection has used all call ids", wasRefused: true))
            return
        }
        let id = nextCallID
        nextCallID += 1
        call.id = id
        calls[id] = call
        call.requestClosed = endStream
        queue.append(callID: id) {
            writer.writeCall(callID: id, head: head, message: message, endStream: endStream, compress: compress, into: &$0)
        }
        call.started.succeed()
        scheduleFlush()
    }

    private func requestTooLarge(_ message: ByteBuffer) -> RPCError? {
        guard let limit = settings?.peer.maxMessageSize, message.readableBytes > limit else { return nil }
        return RPCError(
            code: .resourceExhausted,
            message: "request of \(message.readableBytes) bytes exceeds the server's maximum message size \(limit)")
    }

    private func startWaitingCalls() {
        guard case .ready = state, let settings else { return }
        while !waitingToStart.isEmpty, calls.count < settings.peer.maxConcurrentCalls {
            let (call, head, message, endStream, compress) = waitingToStart.removeFirst()
            send(call, head: head, message: message, endStream: endStream, compress: compress)
        }
    }

    func writeMessage(_ call: ClientCall, _ message: ByteBuffer, compress: Bool) throws -> EventLoopFuture<Void>? {
        guard let writer, let context, call.id != 0, calls[call.id] === call, !call.requestClosed else {
            throw call.finalError ?? RPCError(code: .cancelled, message: "the call has ended")
        }
        if let tooLarge = requestTooLarge(message) { throw tooLarge }
        queue.append(callID: call.id) {
            writer.writeMessage(callID: call.id, message: message, endStream: false, compress: compress, into: &$0)
        }
        scheduleFlush()
        guard context.channel.isWritable, !queue.hasPending(callID: call.id) else {
            let promise = context.eventLoop.makePromise(of: Void.self)
            writeWaiters.add(callID: call.id, promise: promise)
            return promise.futureResult
        }
        return nil
    }

    func halfClose(_ call: ClientCall) {
        guard let writer, calls[call.id] === call, !call.requestClosed else { return }
        call.requestClosed = true
        queue.append(callID: call.id) { writer.writeHalfClose(callID: call.id, into: &$0) }
        scheduleFlush()
    }

    /// Ends a call from the client side: CANCEL to the server, `error` to the caller.
    func cancel(_ call: ClientCall, reason: CancelReason, error: RPCError) {
        if let index = waitingToStart.firstIndex(where: { $0.0 === call }) {
            waitingToStart.remove(at: index)
            call.fail(error)
            return
        }
        guard call.id != 0, calls[call.id] === call else { return }
        calls[call.id] = nil
        queue.discard(callID: call.id)
        if let writer {
            queue.appendControl { writer.writeCancel(callID: call.id, reason: reason, text: "", into: &$0) }
        }
        scheduleFlush()
        call.fail(error)
        callFinished(call.id)
    }

    func ping() -> EventLoopFuture<Duration> {
        guard let context else { preconditionFailure("ping before handlerAdded") }
        let promise = context.eventLoop.makePromise(of: Duration.self)
        guard case .ready = state else {
            promise.fail(RPCError(code: .unavailable, message: "connection not ready"))
            return promise.futureResult
        }
        let id = nextPingID
        nextPingID += 1
        pings[id] = promise
        queue.appendControl { FrameWriter.writePing(.ping, data: id, into: &$0) }
        flushNow()
        return promise.futureResult
    }

    /// Tells the server no more calls come (GOAWAY) and closes; open calls fail with UNAVAILABLE.
    func close() {
        guard let context else { return }
        if case .ready = state {
            let goAway = GoAway(lastCallID: 0, code: .noError, debugMessage: "client closing")
            queue.appendControl { FrameWriter.writeGoAway(goAway, into: &$0) }
            flushNow()
        }
        context.close(promise: nil)
    }

    func callFinished(_ id: UInt32) {
        windows.forget(callID: id)
        queue.forget(callID: id)
        resumeWriters()
        startWaitingCalls()
        if case .draining = state, calls.isEmpty { context?.close(promise: nil) }
    }

    private func scheduleFlush() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute { loopBound.value.flushNow() }
    }

    private func flushNow() {
        flushScheduled = false
        guard let context else { return }
        queue.release(upTo: 256 * 1024)
        let progressed = queue.output.readableBytes > 0
        if progressed {
            context.writeAndFlush(wrapOutboundOut(queue.takeOutput(allocator: context.channel.allocator)), promise: nil)
        }
        guard context.channel.isWritable else { return }  // writability change resumes
        // Frames that wait only for a WINDOW are rescheduled by the WINDOW, not polled.
        if progressed, queue.hasPending { scheduleFlush() }
        resumeWriters()
    }
}

@available(*, unavailable)
extension ClientConnectionHandler: Sendable {}

/// State of a connection that the pool reads without hopping to its event loop.
final class ConnectionFlags: Sendable {
    private let draining = Atomic<Bool>(false)

    var isDraining: Bool {
        get { draining.load(ordering: .relaxed) }
        set { draining.store(newValue, ordering: .relaxed) }
    }
}
