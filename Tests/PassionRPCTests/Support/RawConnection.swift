import NIOCore
import NIOPosix
import PassionTLS
import PassionWire
import Synchronization

/// A TLS connection that sends arbitrary bytes and reads back decoded frames: a misbehaving
/// peer for the bad-input tests.
final class RawConnection: Sendable {
    let channel: any Channel
    private let inbox: FrameInbox

    private init(channel: any Channel, inbox: FrameInbox) {
        self.channel = channel
        self.inbox = inbox
    }

    static func open(port: Int, caPath: String) async throws -> RawConnection {
        let tls = try TLSContext(.client(serverHostname: "127.0.0.1", trustRootsPath: caPath))
        let inbox = FrameInbox()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: tls))
                    try channel.pipeline.syncOperations.addHandler(FrameCollector(inbox: inbox))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, inbox: inbox)
    }

    /// A plaintext connection that reads only when `read()` asks (autoRead off), as a client
    /// busy writing would: what the server sent waits in the socket meanwhile.
    static func openPlaintext(port: Int) async throws -> RawConnection {
        let inbox = FrameInbox()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(FrameCollector(inbox: inbox)) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, inbox: inbox)
    }

    /// Asks for one read (for connections opened with autoRead off).
    func read() {
        channel.read()
    }

    func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
    }

    func send(_ buffer: ByteBuffer) async throws {
        try await channel.writeAndFlush(buffer).get()
    }

    /// Preface and a default HELLO; returns once the server's HELLO arrived.
    func handshake(_ settings: ConnectionSettings = ConnectionSettings()) async throws -> ConnectionSettings {
        var buffer = ByteBuffer(bytes: ConnectionPreface.bytes)
        FrameWriter.writeHello(settings.hello, into: &buffer)
        try await send(buffer)
        guard let hello = try await next(), hello.type == .hello else { throw WireError(.unexpectedFrame, "no HELLO") }
        var payload = hello.payload
        return try ConnectionSettings(peer: try Hello.read(from: &payload))
    }

    /// The next frame, or nil once the server closed the connection; throws after `timeout`.
    func next(timeout: Duration = .seconds(30)) async throws -> Frame? {
        let deadline = ContinuousClock.now + timeout
        while true {
            switch inbox.take() {
            case .frame(let frame): return frame
            case .closed: return nil
            case .empty:
                guard ContinuousClock.now < deadline else {
                    throw WireError(.unexpectedFrame, "no frame within \(timeout)")
                }
                try await Task.sleep(for: .milliseconds(2))
            }
        }
    }

    /// Reads frames until one of `type` (skipping HELLO and others); nil if the connection closed.
    func next(_ type: FrameType, timeout: Duration = .seconds(30)) async throws -> Frame? {
        while let frame = try await next(timeout: timeout) {
            if frame.type == type { return frame }
        }
        return nil
    }

    /// True when the server closes the connection within `timeout`.
    func closes(within timeout: Duration = .seconds(30)) async throws -> Bool {
        while try await next(timeout: timeout) != nil {}
        return true
    }

    func close() async {
        try? await channel.close()
    }
}

/// Frames received so far, shared between the event loop and the test.
final class FrameInbox: Sendable {
    enum Taken {
        case frame(Frame)
        case empty
        case closed
    }

    private let state = Mutex<(frames: [Frame], closed: Bool)>(([], false))

    func put(_ frame: Frame) { state.withLock { $0.frames.append(frame) } }
    func close() { state.withLock { $0.closed = true } }

    func take() -> Taken {
        state.withLock { state in
            if !state.frames.isEmpty { return .frame(state.frames.removeFirst()) }
            return state.closed ? .closed : .empty
        }
    }
}

private final class FrameCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxPayloadSize: 16 * 1024 * 1024))
    private let inbox: FrameInbox

    init(inbox: FrameInbox) {
        self.inbox = inbox
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        try? processor.process(buffer: unwrapInboundIn(data)) { inbox.put($0) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        inbox.close()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Frame builders for tests.
enum RawFrames {
    static func call(
        _ id: UInt32, method: String, message: [UInt8]?, flags extra: FrameFlags = [], metadata: Metadata = Metadata(),
        timeoutMicroseconds: UInt64 = 0
    ) -> ByteBuffer {
        var payload = ByteBuffer()
        CallHead(method: method, timeoutMicroseconds: timeoutMicroseconds, metadata: metadata).write(to: &payload)
        var flags = extra
        if let message {
            payload.writeBytes(message)
            flags.insert(.hasMessage)
        }
        var buffer = ByteBuffer()
        buffer.writeFrame(Frame(type: .call, flags: flags, callID: id, payload: payload))
        return buffer
    }

    static func frame(_ type: FrameType, flags: FrameFlags = [], callID: UInt32 = 0, payload: [UInt8] = []) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeFrame(Frame(type: type, flags: flags, callID: callID, payload: ByteBuffer(bytes: payload)))
        return buffer
    }

    static func trailers(_ frame: Frame) throws -> TrailersHead {
        var payload = frame.payload
        return try TrailersHead.read(from: &payload, metadataLimit: 1 << 20)
    }

    static func goAway(_ frame: Frame) throws -> GoAway {
        var payload = frame.payload
        return try GoAway.read(from: &payload)
    }
}
