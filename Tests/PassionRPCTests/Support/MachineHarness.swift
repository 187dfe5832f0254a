import NIOCore
@testable import PassionRPC
@testable import PassionRPCServer
import PassionWire

/// Drives a `ServerConnectionMachine` as a client would, on a clock the test moves: no sockets,
/// no sleeps. Frames go in encoded as bytes; what the machine queues comes out decoded.
struct MachineHarness {
    static let unary = MethodDescriptor(service: "t.T", method: "Unary", kind: .unary)
    static let serverStream = MethodDescriptor(service: "t.T", method: "ServerStream", kind: .serverStreaming)
    static let clientStream = MethodDescriptor(service: "t.T", method: "ClientStream", kind: .clientStreaming)
    static let bidi = MethodDescriptor(service: "t.T", method: "Bidi", kind: .bidirectional)

    var machine: ServerConnectionMachine
    var now: MonotonicInstant
    /// The client's settings (its HELLO); what the server must respect.
    var client: ConnectionSettings

    init(
        client: ConnectionSettings = ConnectionSettings(), budget: ServerMemoryBudget? = nil,
        metrics: ServerMetrics = .disabled, configure: (inout ServerConnectionConfiguration) -> Void = { _ in }
    ) {
        var configuration = ServerConnectionConfiguration()
        configure(&configuration)
        var router = RPCRouter()
        router.register(Self.unary, .unary { bytes, _ in bytes })
        router.register(Self.serverStream, .serverStreaming { _, _, _ in })
        router.register(Self.clientStream, .clientStreaming { _, _ in ByteBuffer() })
        router.register(Self.bidi, .bidirectional { _, _, _ in })
        router.instrument(with: metrics)
        now = .now
        machine = ServerConnectionMachine(configuration: configuration, router: router, budget: budget, metrics: metrics, now: now)
        machine.start()
        self.client = client
    }

    // MARK: Input

    @discardableResult
    mutating func send(_ bytes: ByteBuffer) -> [ServerConnectionAction] {
        machine.receive(bytes, now: now)
    }

    @discardableResult
    mutating func send(_ frames: Frame...) -> [ServerConnectionAction] {
        var buffer = ByteBuffer()
        for frame in frames { buffer.writeFrame(frame) }
        return send(buffer)
    }

    /// Preface and HELLO; returns the server's HELLO settings.
    @discardableResult
    mutating func handshake() -> [Frame] {
        var buffer = ByteBuffer(bytes: ConnectionPreface.bytes)
        FrameWriter.writeHello(client.hello, into: &buffer)
        send(buffer)
        return output()
    }

    static func call(
        _ id: UInt32, _ method: MethodDescriptor = unary, message: [UInt8]? = nil, endStream: Bool = false,
        timeoutMicroseconds: UInt64 = 0, metadata: Metadata = Metadata()
    ) -> Frame {
        var payload = ByteBuffer()
        CallHead(method: method.fullName, timeoutMicroseconds: timeoutMicroseconds, metadata: metadata).write(to: &payload)
        var flags: FrameFlags = endStream ? [.endStream] : []
        if let message {
            payload.writeBytes(message)
            flags.insert(.hasMessage)
        }
        return Frame(type: .call, flags: flags, callID: id, payload: payload)
    }

    static func message(_ id: UInt32, count: Int, flags: FrameFlags = []) -> Frame {
        Frame(type: .message, flags: flags, callID: id, payload: ByteBuffer(repeating: 0x61, count: count))
    }

    static func frame(_ type: FrameType, _ id: UInt32 = 0, flags: FrameFlags = [], payload: [UInt8] = []) -> Frame {
        Frame(type: type, flags: flags, callID: id, payload: ByteBuffer(bytes: payload))
    }

    static func window(_ id: UInt32, _ increment: UInt32) -> Frame {
        var payload = ByteBuffer()
        payload.writeInteger(increment)
        return Frame(type: .window, flags: [], callID: id, payload: payload)
    }

    // MARK: Time

    @discardableResult
    mutating func advance(_ duration: Duration) -> [ServerConnectionAction] {
        now = now + duration
        return machine.tick(now: now)
    }

    // MARK: Output

    /// Everything the machine would write now, decoded.
    mutating func output() -> [Frame] {
        var frames: [Frame] = []
        while true {
            let (buffer, _) = machine.takeOutput(limit: .max, now: now)
            guard var buffer else { return frames }
            var decoder = FrameDecoder(maxPayloadSize: 1 << 30)
            while let frame = try? decoder.decode(buffer: &buffer) { frames.append(frame) }
            if !machine.queue.hasPending || frames.isEmpty { return frames }
        }
    }

    static func trailers(_ frame: Frame) -> TrailersHead? {
        var payload = frame.payload
        return try? TrailersHead.read(from: &payload, metadataLimit: 1 << 20)
    }

    static func goAway(_ frames: [Frame]) -> GoAway? {
        guard var payload = frames.first(where: { $0.type == .goAway })?.payload else { return nil }
        return try? GoAway.read(from: &payload)
    }

    static func outcome(_ message: ByteBuffer? = nil, error: RPCError? = nil) -> ServerCallOutcome {
        ServerCallOutcome(message: message, error: error, initialMetadata: Metadata(), trailingMetadata: Metadata(), compress: false)
    }
}

/// Reading actions in tests.
extension [ServerConnectionAction] {
    var started: [UInt32] { compactMap { if case .startCall(let start) = $0 { start.id } else { nil } } }
    var delivered: [UInt32] { compactMap { if case .deliverRequest(let id, _) = $0 { id } else { nil } } }
    var yielded: [UInt32] { compactMap { if case .yieldRequest(let id, _) = $0 { id } else { nil } } }
    var cancelled: [UInt32: StatusCode] {
        Dictionary(compactMap { if case .cancelCall(let id, let error) = $0 { (id, error.code) } else { nil } }, uniquingKeysWith: { a, _ in a })
    }
    var closes: Bool { contains { if case .close = $0 { true } else { false } } }
    var reading: Bool? { compactMap { if case .setReading(let on) = $0 { on } else { nil } }.last }
    var shutdown: [UInt32] {
        flatMap { action -> [UInt32] in
            guard case .shutdownCalls(let ids) = action else { return [] }
            return ids
        }
    }
}
