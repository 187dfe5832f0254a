import NIOCore
import PassionTLS
import PassionWire
import Synchronization

/// Carries a `ClientConnectionMachine` on a channel: socket events go in, its actions are carried
/// out on the callers' promises and streams, its frames are written. Writes of one event-loop
/// turn are coalesced into one flush. Confined to the channel's event loop.
final class ClientConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Bytes written per flush when fragments wait: large enough for throughput, small enough to
    /// let other calls' frames interleave.
    private static let flushSize = 256 * 1024

    private var machine: ClientConnectionMachine
    private var context: ChannelHandlerContext?
    private var calls: [ClientCallHandle: ClientCall] = [:]
    private var pings: [UInt64: EventLoopPromise<Duration>] = [:]
    private var writeWaiters = WriteWaiters()
    private var flushScheduled = false
    private var prefaceSent = false
    private let ready: EventLoopPromise<NegotiatedSettings>
    /// Whether the connection takes new calls; readable from any thread.
    let flags = ConnectionFlags()
    private(set) var tlsInfo: TLSHandshakeCompleted?

    init(settings: ConnectionSettings, ready: EventLoopPromise<NegotiatedSettings>) {
        self.machine = ClientConnectionMachine(settings: settings)
        self.ready = ready
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
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

    private func sendPreface() {
        guard !prefaceSent else { return }
        prefaceSent = true
        flushNow()  // the machine queued the preface and HELLO when it was made
    }

    func channelInactive(context: ChannelHandlerContext) {
        apply(machine.closed())
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let rpcError: RPCError
        switch error {
        case let tls as TLSError: rpcError = RPCError(code: .unavailable, message: tls.message)
        case let wire as WireError: rpcError = RPCError(code: .internal, message: "protocol error from server: \(wire)")
        default: rpcError = RPCError(code: .unavailable, message: "connection failed: \(error)")
        }
        apply(machine.transportFailed(rpcError))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let handshake = event as? TLSHandshakeCompleted { tlsInfo = handshake }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { scheduleFlush() }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        apply(machine.receive(unwrapInboundIn(data)))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushNow()
        context.fireChannelReadComplete()
    }

    // MARK: Actions

    private func apply(_ actions: [ClientConnectionAction]) {
        for action in actions {
            switch action {
            case .ready(let settings):
                ready.succeed(settings)
            case .readyFailed(let error):
                ready.fail(error)
            case .started(let handle):
                calls[handle]?.started.succeed()
            case .message(let handle, let message):
                calls[handle]?.receive(message)
            case .succeeded(let handle, let response):
                calls.removeValue(forKey: handle)?.succeed(response)
            case .failed(let handle, let error):
                calls.removeValue(forKey: handle)?.fail(error)
            case .pong(let id):
                pings.removeValue(forKey: id)?.succeed(.zero)
            case .connectionFailed(let error):
                let waiting = pings
                pings = [:]
                for promise in waiting.values { promise.fail(error) }
                writeWaiters.failAll(error)
            case .close:
                flushNow()
                context?.close(promise: nil)
            }
        }
        flags.isDraining = machine.isDraining
        scheduleFlush()
        resumeWriters()
    }

    // MARK: Calls (from ClientConnection, on the event loop)

    /// Starts a call, or queues it while the HELLO or a free slot under the server's limit is awaited.
    func start(_ call: ClientCall, head: CallHead, message: ByteBuffer?, endStream: Bool, compress: Bool) {
        let (handle, actions) = machine.start(kind: call.kind, head: head, message: message, endStream: endStream, compress: compress)
        call.handle = handle
        calls[handle] = call
        apply(actions)
    }

    /// Queues a request message; the future (if any) completes when the writer may go on.
    func writeMessage(_ call: ClientCall, _ message: ByteBuffer, compress: Bool) throws -> EventLoopFuture<Void>? {
        guard let context, let id = try machine.writeMessage(call.handle, message, compress: compress) else {
            throw call.finalError ?? RPCError(code: .cancelled, message: "the call has ended")
        }
        scheduleFlush()
        guard context.channel.isWritable, !machine.queue.hasPending(callID: id) else {
            let promise = context.eventLoop.makePromise(of: Void.self)
            writeWaiters.add(callID: id, promise: promise)
            return promise.futureResult
        }
        return nil
    }

    func halfClose(_ call: ClientCall) {
        machine.halfClose(call.handle)
        scheduleFlush()
    }

    /// Ends a call from the client side: CANCEL to the server, `error` to the caller.
    func cancel(_ call: ClientCall, reason: CancelReason, error: RPCError) {
        apply(machine.cancel(call.handle, reason: reason, error: error))
    }

    /// Returns consumed stream bytes to the server's window.
    func acknowledge(_ call: ClientCall, bytes: Int) {
        machine.acknowledge(call.handle, bytes: bytes)
        scheduleFlush()
    }

    func ping(on eventLoop: any EventLoop) -> EventLoopFuture<Duration> {
        let promise = eventLoop.makePromise(of: Duration.self)
        guard context != nil, let id = machine.ping() else {
            promise.fail(RPCError(code: .unavailable, message: "connection not ready"))
            return promise.futureResult
        }
        pings[id] = promise
        flushNow()
        return promise.futureResult
    }

    /// Tells the server no more calls come (GOAWAY) and closes; open calls fail with UNAVAILABLE.
    func close() {
        apply(machine.close())
    }

    // MARK: Output

    private func resumeWriters() {
        guard !writeWaiters.isEmpty else { return }
        writeWaiters.resume(isWritable: context?.channel.isWritable == true, queue: machine.queue) { self.machine.calls[$0] != nil }
    }

    private func scheduleFlush() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute { loopBound.value.flushNow() }
    }

    private func flushNow() {
        flushScheduled = false
        guard let context, prefaceSent, machine.phase != .closed else { return }
        machine.queue.release(upTo: Self.flushSize)
        let progressed = machine.queue.output.readableBytes > 0
        if progressed {
            context.writeAndFlush(wrapOutboundOut(machine.queue.takeOutput(allocator: context.channel.allocator)), promise: nil)
        }
        guard context.channel.isWritable else { return }  // writability change resumes
        // Frames that wait only for a WINDOW are rescheduled by the WINDOW, not polled.
        if progressed, machine.queue.hasPending { scheduleFlush() }
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
