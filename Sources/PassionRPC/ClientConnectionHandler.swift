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

    enum State {
        case starting
        case ready
        /// The server sent GOAWAY: no new calls; open ones finish.
        case draining
        case closed
    }

    let localSettings: ConnectionSettings
    var state: State = .starting
    var context: ChannelHandlerContext?
    private var processor: NIOSingleStepByteToMessageProcessor<FrameDecoder>
    var settings: NegotiatedSettings?
    var writer: FrameWriter?
    private let inflater = Inflater()
    var queue = OutboundQueue()
    var flushScheduled = false
    var nextCallID: UInt32 = 1
    var calls: [UInt32: ClientCall] = [:]
    var waitingToStart: [(ClientCall, CallHead, ByteBuffer?, Bool, Bool)] = []
    var windows = InboundWindows(initialWindow: 1024 * 1024)
    var writeWaiters = WriteWaiters()
    var pings: [UInt64: EventLoopPromise<Duration>] = [:]
    var nextPingID: UInt64 = 1
    let ready: EventLoopPromise<NegotiatedSettings>
    /// Set once the connection can take no new calls (GOAWAY or closed); readable from any thread.
    let flags = ConnectionFlags()
    var isDraining: Bool {
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

    func resumeWriters() {
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
