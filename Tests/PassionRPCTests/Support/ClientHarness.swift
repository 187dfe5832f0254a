import NIOCore
@testable import PassionRPC
@testable import PassionRPCServer
import PassionWire

/// Drives a `ClientConnectionMachine` as a server would: frames go in encoded as bytes; what the
/// machine queues for the server comes out decoded (the preface and HELLO already taken).
struct ClientHarness {
    var machine: ClientConnectionMachine
    /// The server's settings (its HELLO).
    var server: ConnectionSettings

    init(server configure: (inout ConnectionSettings) -> Void = { _ in }, local: (inout ConnectionSettings) -> Void = { _ in }) {
        var server = ConnectionSettings()
        configure(&server)
        var client = ConnectionSettings()
        local(&client)
        self.server = server
        machine = ClientConnectionMachine(settings: client)
        _ = machine.queue.takeOutput(allocator: ByteBufferAllocator())
    }

    @discardableResult
    mutating func serverHello() -> [ClientConnectionAction] {
        var bytes = ByteBuffer()
        FrameWriter.writeHello(server.hello, into: &bytes)
        return machine.receive(bytes)
    }

    @discardableResult
    mutating func start(
        kind: CallKind = .unary, message: ByteBuffer? = ByteBuffer(), endStream: Bool = true
    ) -> (ClientCallHandle, [ClientConnectionAction]) {
        machine.start(kind: kind, head: CallHead(method: "t.T/M"), message: message, endStream: endStream, compress: false)
    }

    @discardableResult
    mutating func send(_ frames: Frame...) -> [ClientConnectionAction] {
        var buffer = ByteBuffer()
        for frame in frames { buffer.writeFrame(frame) }
        return machine.receive(buffer)
    }

    /// Everything the machine would write now, decoded.
    mutating func output() -> [Frame] {
        var frames: [Frame] = []
        machine.queue.release(upTo: .max)
        var buffer = machine.queue.takeOutput(allocator: ByteBufferAllocator())
        var decoder = FrameDecoder(maxPayloadSize: 1 << 30)
        while let frame = try? decoder.decode(buffer: &buffer) { frames.append(frame) }
        return frames
    }

    // MARK: Server frames

    static func frame(_ type: FrameType, _ id: UInt32 = 0, flags: FrameFlags = [], payload: [UInt8] = []) -> Frame {
        Frame(type: type, flags: flags, callID: id, payload: ByteBuffer(bytes: payload))
    }

    static func headers(_ id: UInt32, _ metadata: Metadata) -> Frame {
        var payload = ByteBuffer()
        payload.writeMetadata(metadata)
        return Frame(type: .headers, callID: id, payload: payload)
    }

    static func message(_ id: UInt32, _ bytes: [UInt8], flags: FrameFlags = []) -> Frame {
        Frame(type: .message, flags: flags, callID: id, payload: ByteBuffer(bytes: bytes))
    }

    static func trailersFrame(_ id: UInt32, _ head: TrailersHead, message: [UInt8]? = nil) -> Frame {
        var payload = ByteBuffer()
        head.write(to: &payload)
        if let message { payload.writeBytes(message) }
        return Frame(type: .trailers, flags: message == nil ? [] : [.hasMessage], callID: id, payload: payload)
    }

    static func trailers(_ id: UInt32, message: [UInt8]? = nil, metadata: Metadata = Metadata()) -> Frame {
        trailersFrame(id, TrailersHead(status: 0, metadata: metadata), message: message)
    }

    static func window(_ id: UInt32, _ increment: UInt32) -> Frame {
        var payload = ByteBuffer()
        payload.writeInteger(increment)
        return Frame(type: .window, callID: id, payload: payload)
    }

    static func goAwayFrame(lastCallID: UInt32, _ code: GoAwayCode, _ text: String = "") -> Frame {
        var payload = ByteBuffer()
        GoAway(lastCallID: lastCallID, code: code, debugMessage: text).write(to: &payload)
        return Frame(type: .goAway, payload: payload)
    }

    // MARK: Reading output

    static func goAway(_ frames: [Frame]) -> GoAway? {
        guard var payload = frames.first(where: { $0.type == .goAway })?.payload else { return nil }
        return try? GoAway.read(from: &payload)
    }

    static func windowIncrements(_ frames: [Frame]) -> [UInt32: UInt32] {
        var increments: [UInt32: UInt32] = [:]
        for frame in frames where frame.type == .window {
            var payload = frame.payload
            increments[frame.callID, default: 0] += payload.readInteger(as: UInt32.self) ?? 0
        }
        return increments
    }
}

/// Reading client actions in tests.
extension [ClientConnectionAction] {
    var isReady: Bool { contains { if case .ready = $0 { true } else { false } } }
    var startedHandles: [ClientCallHandle] { compactMap { if case .started(let handle) = $0 { handle } else { nil } } }
    var failures: [ClientCallHandle: RPCError] {
        Dictionary(compactMap { if case .failed(let handle, let error) = $0 { (handle, error) } else { nil } }, uniquingKeysWith: { a, _ in a })
    }
    var succeeded: [ClientCallHandle: UnaryResponse] {
        Dictionary(compactMap { if case .succeeded(let handle, let response) = $0 { (handle, response) } else { nil } }, uniquingKeysWith: { a, _ in a })
    }
    var messages: [ClientCallHandle: [Int]] {
        var sizes: [ClientCallHandle: [Int]] = [:]
        for case .message(let handle, let message) in self { sizes[handle, default: []].append(message.bytes.readableBytes) }
        return sizes
    }
    var pongs: [UInt64] { compactMap { if case .pong(let id) = $0 { id } else { nil } } }
    var closes: Bool { contains { if case .close = $0 { true } else { false } } }
}
