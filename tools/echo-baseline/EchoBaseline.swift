import Foundation
import NIOCore
import NIOPosix
import PassionTLS
import PassionWire
import Synchronization

/// The ceiling passion/1 is measured against, in the same run: a SwiftNIO server that echoes
/// length-prefixed frames over the same OpenSSL TLS handler, and a closed-loop client. No RPC,
/// no protobuf, no tasks: what is left is TLS, framing and sockets.
///
/// Usage: passion-echo-baseline CONNECTIONS IN_FLIGHT SECONDS PAYLOAD_BYTES
@main
struct EchoBaseline {
    static func main() async throws {
        let arguments = CommandLine.arguments.dropFirst().compactMap { Int($0) }
        guard arguments.count == 4 else {
            FileHandle.standardError.write(Data("usage: passion-echo-baseline CONNECTIONS IN_FLIGHT SECONDS PAYLOAD_BYTES\n".utf8))
            exit(64)
        }
        let (connections, inFlight, seconds, payloadSize) = (arguments[0], arguments[1], arguments[2], arguments[3])
        let directory = NSTemporaryDirectory() + "passion-echo-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let certificates = DevelopmentCertificates(dataDirectory: directory)
        try certificates.ensure(host: "127.0.0.1")
        let serverTLS = try TLSContext(.server(certificateChainPath: certificates.certificatePath, privateKeyPath: certificates.privateKeyPath))
        let clientTLS = try TLSContext(.client(serverHostname: "127.0.0.1", trustRootsPath: certificates.caPath))

        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: serverTLS))
                    try channel.pipeline.syncOperations.addHandler(EchoServerHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = server.localAddress?.port ?? 0

        let counter = Counter()
        var clients: [any Channel] = []
        let perConnection = max(1, inFlight / connections)
        for _ in 0..<connections {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(TLSHandler(context: clientTLS))
                        try channel.pipeline.syncOperations.addHandler(
                            EchoClientHandler(inFlight: perConnection, payloadSize: payloadSize, counter: counter))
                    }
                }
                .connect(host: "127.0.0.1", port: port).get()
            clients.append(channel)
        }
        try await Task.sleep(for: .seconds(1))  // warm-up
        let start = counter.value
        let cpuStart = cpuSeconds()
        try await Task.sleep(for: .seconds(seconds))
        let calls = counter.value - start
        let cpu = cpuSeconds() - cpuStart
        for client in clients { try? await client.close() }
        try? await server.close()
        print("{\"qps\": \(Double(calls) / Double(seconds)), \"cpu_us_per_echo\": \(cpu / Double(max(calls, 1)) * 1e6)}")
    }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
            + Double(usage.ru_stime.tv_usec) / 1e6
    }
}

final class Counter: Sendable {
    private let count = Atomic<Int>(0)
    var value: Int { count.load(ordering: .relaxed) }
    func add(_ amount: Int) { count.add(amount, ordering: .relaxed) }
}

/// Echoes every frame back; one flush per read batch.
final class EchoServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxPayloadSize: 1 << 20))
    private var output = ByteBuffer()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        try? processor.process(buffer: unwrapInboundIn(data)) { frame in output.writeFrame(frame) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if output.readableBytes > 0 {
            context.writeAndFlush(wrapOutboundOut(output), promise: nil)
            output = context.channel.allocator.buffer(capacity: 4096)
        }
    }
}

/// Keeps `inFlight` frames outstanding: sends a new one for every echo received.
final class EchoClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxPayloadSize: 1 << 20))
    private let inFlight: Int
    private let frame: Frame
    private let counter: Counter

    init(inFlight: Int, payloadSize: Int, counter: Counter) {
        self.inFlight = inFlight
        self.frame = Frame(type: .message, callID: 1, payload: ByteBuffer(repeating: 0x61, count: payloadSize))
        self.counter = counter
    }

    func channelActive(context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: inFlight * 80)
        for _ in 0..<inFlight { buffer.writeFrame(frame) }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var replies = 0
        try? processor.process(buffer: unwrapInboundIn(data)) { _ in replies += 1 }
        guard replies > 0 else { return }
        counter.add(replies)
        var buffer = context.channel.allocator.buffer(capacity: replies * 80)
        for _ in 0..<replies { buffer.writeFrame(frame) }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }
}
