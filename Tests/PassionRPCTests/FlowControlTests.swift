import Foundation
import PassionTestSupport
import NIOCore
import PassionServerAPI
import PassionClient
import PassionRPCServer
import PassionWire
import SwiftProtobuf
import Testing

/// Per-call flow control end to end: a slow consumer slows only its own call.
@Suite("Flow control")
struct FlowControlE2ETests {
    @Test("an unconsumed 8 MB server stream does not block other calls; consumed later, nothing is lost")
    func slowConsumerBlocksOnlyItsCall() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let stream = try await connection.diagnostics.streamMessages(StreamRequest.with {
                $0.count = 2000
                $0.size = 4096
            })
            // Nobody reads the stream yet: its window (1 MiB) fills and the server's writer waits.
            try await Task.sleep(for: .milliseconds(200))
            for _ in 0..<20 {
                #expect(try await connection.diagnostics.echo { $0.payload = Data("x".utf8) }.payload == Data("x".utf8))
            }
            var indexes: [Int32] = []
            for try await item in stream { indexes.append(item.index) }
            #expect(indexes == Array(0..<2000))
            await connection.close()
        }
    }

    @Test("a client stream to a handler that reads slowly is paced by the window, and arrives whole")
    func slowHandlerPacesClientStream() async throws {
        let method = MethodDescriptor(service: "test.Flow", method: "SlowCount", kind: .clientStreaming)
        try await TestServer.with(routes: { router in
            router.registerClientStreaming(method, Chunk.self, ByteCount.self) { requests, _ in
                try await Task.sleep(for: .milliseconds(300))
                var count = ByteCount()
                for try await chunk in requests {
                    count.messages += 1
                    count.bytes += Int64(chunk.payload.count)
                }
                return count
            }
        }) { server in
            let connection = try await server.connect()
            let upload = Task {
                try await connection.clientStreaming(method, as: ByteCount.self, options: .defaults) { (writer: RPCRequestWriter<Chunk>) in
                    for _ in 0..<100 { try await writer.write(Chunk.with { $0.payload = Data(count: 64 * 1024) }, compress: false) }
                }.message
            }
            // While the upload waits for window, the connection serves other calls.
            try await Task.sleep(for: .milliseconds(100))
            #expect(try await connection.diagnostics.echo(EchoRequest()) == EchoResponse())
            let count = try await upload.value
            #expect(count.messages == 100 && count.bytes == 100 * 64 * 1024)
            await connection.close()
        }
    }

    @Test("a peer that sends beyond its window gets GOAWAY(PROTOCOL_ERROR)")
    func windowViolation() async throws {
        let method = MethodDescriptor(service: "test.Flow", method: "Never", kind: .clientStreaming)
        try await TestServer.with(routes: { router in
            router.registerClientStreaming(method, Chunk.self, ByteCount.self) { _, _ in
                try await Task.sleep(for: .seconds(30))  // never consumes
                return ByteCount()
            }
        }) { server in
            let raw = try await RawConnection.open(port: server.port, caPath: server.certificates.caPath)
            let settings = try await raw.handshake()
            #expect(settings.initialWindowSize == 1024 * 1024)
            var burst = RawFrames.call(1, method: method.fullName, message: nil)
            let chunk = [UInt8](repeating: 7, count: 60 * 1024)
            for _ in 0..<20 {  // 1.2 MB of MESSAGE payload against a 1 MiB window
                var frame = RawFrames.frame(.message, callID: 1, payload: chunk)
                burst.writeBuffer(&frame)
            }
            try await raw.send(burst)
            let goAway = try #require(try await raw.next(.goAway))
            #expect(try RawFrames.goAway(goAway).code == .protocolError)
            #expect(try await raw.closes())
        }
    }
}
