import Foundation
import Logging
import NIOCore
import NIOEmbedded
@testable import PassionRPC
@testable import PassionRPCServer
import PassionAPI
import PassionClient
import PassionTestSupport
import PassionWire
import Testing

/// A closed connection must leave nothing behind: its handler (and with it the pipeline, the
/// buffers, the zlib states) is freed once the channel is gone. Measured from outside this was
/// ~100 KB per connection (tools/probe/connections.py churn).
@Suite("Closed connections are freed")
struct ConnectionLeakTests {
    /// Runs a connection on an embedded channel to the point `drive` takes it, closes it, and
    /// returns whether its handler is still alive afterwards.
    static func handlerOutlivesClose(_ drive: (EmbeddedChannel) throws -> Void) throws -> Bool {
        weak var weakHandler: ServerConnectionHandler?
        try {
            let channel = EmbeddedChannel()
            let handler = ServerConnectionHandler(
                configuration: ServerConnectionConfiguration(), router: RPCRouter(), authenticator: AnonymousAuthenticator(),
                logger: Logger(label: "leak-test"))
            weakHandler = handler
            try channel.pipeline.syncOperations.addHandler(handler)
            channel.pipeline.fireChannelActive()
            try drive(channel)
            _ = try? channel.finish(acceptAlreadyClosed: true)
            channel.embeddedEventLoop.run()
        }()
        return weakHandler != nil
    }

    static var prefaceAndHello: ByteBuffer {
        var buffer = ByteBuffer(bytes: ConnectionPreface.bytes)
        FrameWriter.writeHello(ConnectionSettings().hello, into: &buffer)
        return buffer
    }

    @Test("the server's handler is freed after close: before HELLO, after HELLO, after a protocol error")
    func serverHandlerFreed() throws {
        #expect(try !Self.handlerOutlivesClose { _ in })
        #expect(try !Self.handlerOutlivesClose { channel in try channel.writeInbound(Self.prefaceAndHello) })
        #expect(try !Self.handlerOutlivesClose { channel in
            try channel.writeInbound(Self.prefaceAndHello)
            try channel.writeInbound(ByteBuffer(bytes: [0, 0, 0, 0, 0x7F, 0, 0, 0, 0, 0]))  // unknown frame type
        })
    }

    @Test("the client's handler is freed after close")
    func clientHandlerFreed() throws {
        weak var weakHandler: ClientConnectionHandler?
        try {
            let channel = EmbeddedChannel()
            let handler = ClientConnectionHandler(settings: ConnectionSettings(), ready: channel.eventLoop.makePromise())
            weakHandler = handler
            try channel.pipeline.syncOperations.addHandler(handler)
            channel.pipeline.fireChannelActive()
            var hello = ByteBuffer()
            FrameWriter.writeHello(ServerConnectionConfiguration().settings.hello, into: &hello)
            try channel.writeInbound(hello)
            _ = try? channel.finish(acceptAlreadyClosed: true)
        }()
        #expect(weakHandler == nil)
    }
}

/// The client's side of keepalive, without sockets or timers: every PING is answered at once.
@Suite("Client keepalive")
struct ClientKeepaliveTests {
    @Test("the client library answers a server's PING with a PONG carrying the same 8 bytes")
    func answersPing() throws {
        let channel = EmbeddedChannel()
        let handler = ClientConnectionHandler(settings: ConnectionSettings(), ready: channel.eventLoop.makePromise())
        try channel.pipeline.syncOperations.addHandler(handler)
        channel.pipeline.fireChannelActive()
        var input = ByteBuffer()
        FrameWriter.writeHello(ServerConnectionConfiguration().settings.hello, into: &input)
        FrameWriter.writePing(.ping, data: 0x0102_0304_0506_0708, into: &input)
        try channel.writeInbound(input)
        channel.pipeline.fireChannelReadComplete()
        channel.embeddedEventLoop.run()
        var written = ByteBuffer()
        while var part = try channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&part) }
        _ = written.readBytes(length: ConnectionPreface.size)
        var decoder = FrameDecoder(maxPayloadSize: 1 << 20)
        var frames: [Frame] = []
        while let frame = try decoder.decode(buffer: &written) { frames.append(frame) }
        let pong = try #require(frames.first { $0.type == .pong })
        var payload = pong.payload
        #expect(payload.readInteger(as: UInt64.self) == 0x0102_0304_0506_0708)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }
}

/// The fuzz target's seed corpus replays in the debug build: the target still builds and its
/// checks (no trap, accounting never negative, budget given back) hold on every seed.
@Suite("Fuzz corpus")
struct FuzzCorpusTests {
    @Test("every seed of tools/fuzz-server/corpus replays through the server state machine")
    func replays() async throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/fuzz-server/corpus")
        let seeds = try FileManager.default.contentsOfDirectory(atPath: corpus.path).sorted().map { corpus.appendingPathComponent($0).path }
        #expect(seeds.count >= 5)
        let result = try await Executables.run("passion-fuzz-server", seeds)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.split(separator: "\n").count == seeds.count)
    }
}

/// A closed connection answers every call with an error instead of trapping.
@Suite("Closed client connection")
struct ClosedClientConnectionTests {
    @Test("ping and calls after close fail with UNAVAILABLE")
    func afterClose() async throws {
        let server = try await TestServer.start()
        let connection = try await server.connect()
        await connection.close()
        await expectRPCError(.unavailable) { try await connection.ping() }
        await expectRPCError(.unavailable) { try await connection.diagnostics.echo(EchoRequest()) }
        await server.stop()
    }
}
