import Foundation
import PassionTestSupport
import NIOCore
import PassionServerAPI
import PassionClient
import PassionRPCServer
import PassionWire
import SwiftProtobuf
import Testing

/// Limits each side enforces before sending, and the connection timers.
@Suite("Limits and timers")
struct LimitsTests {
    @Test("a request over the server's message limit fails locally with RESOURCE_EXHAUSTED")
    func requestTooLarge() async throws {
        try await TestServer.with(configure: { $0.connection.settings.maxMessageSize = 64 * 1024 }) { server in
            let connection = try await server.connect()
            #expect(connection.settings.peer.maxMessageSize == 64 * 1024)
            let error = await expectRPCError(.resourceExhausted) {
                try await connection.diagnostics.echo { $0.payload = Data(count: 100_000) }
            }
            #expect(error?.message.contains("server's maximum message size") == true)
            // Nothing was lost: the connection serves the next call.
            #expect(try await connection.diagnostics.echo { $0.payload = Data(count: 1000) }.payload.count == 1000)
            await connection.close()
        }
    }

    @Test("a response over the client's message limit is answered RESOURCE_EXHAUSTED, not sent")
    func responseTooLarge() async throws {
        try await TestServer.with { server in
            var configuration = server.clientConfiguration()
            configuration.settings.maxMessageSize = 64 * 1024
            let connection = try await ClientConnection.connect(configuration)
            let error = await expectRPCError(.resourceExhausted) {
                try await connection.diagnostics.echo { $0.responseSize = 100_000 }
            }
            #expect(error?.message.contains("client's maximum message size") == true)
            let stream = try await connection.diagnostics.streamMessages(StreamRequest.with {
                $0.count = 2
                $0.size = 100_000
            })
            await expectRPCError(.resourceExhausted) { for try await _ in stream {} }
            await connection.close()
        }
    }

    @Test("invalid or oversize trailing metadata from a handler is dropped, the call still succeeds")
    func handlerMetadataSanitized() async throws {
        let method = MethodDescriptor(service: "test.Metadata", method: "Messy", kind: .unary)
        try await TestServer.with(routes: { router in
            router.registerUnary(method, EchoRequest.self, EchoResponse.self) { _, context in
                var trailing = Metadata()
                trailing.add("good", "kept")
                trailing.add("Bad Key", "dropped")
                trailing.add("huge", String(repeating: "x", count: 60_000))
                context.trailingMetadata = trailing
                return EchoResponse()
            }
        }) { server in
            let connection = try await server.connect()
            let response = try await connection.unary(method, EchoRequest(), as: EchoResponse.self, options: .defaults)
            #expect(response.trailingMetadata["good"] == "kept")
            #expect(response.trailingMetadata["huge"] == nil)
            #expect(response.trailingMetadata.count == 1)
            await connection.close()
        }
    }

    @Test("metadata too large for the server's limit is refused by the client before sending")
    func requestMetadataTooLarge() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            var metadata = Metadata()
            metadata.add("big", String(repeating: "x", count: 20_000))
            await expectRPCError(.invalidArgument) {
                try await connection.diagnostics.echo(EchoRequest(), options: CallOptions(metadata: metadata))
            }
            await connection.close()
        }
    }

    @Test("an idle connection gets GOAWAY(NO_ERROR, idle) and is closed; HELLO announces the timeout")
    func idleTimeout() async throws {
        try await TestServer.with(configure: { $0.connection.idleTimeout = .milliseconds(200) }) { server in
            let raw = try await RawConnection.open(port: server.port, caPath: server.certificates.caPath)
            let announced = try await raw.handshake()
            #expect(announced.idleTimeoutMillis == 200)
            let goAway = try #require(try await raw.next(.goAway))
            let decoded = try RawFrames.goAway(goAway)
            #expect(decoded.code == .noError && decoded.debugMessage == "idle")
            #expect(try await raw.closes())
        }
    }

    @Test("connections beyond the server's maximum are closed as they arrive; the others are served")
    func maxConnections() async throws {
        try await TestServer.with(configure: { $0.maxConnections = 2 }) { server in
            let first = try await RawConnection.open(port: server.port, caPath: server.certificates.caPath)
            let second = try await RawConnection.open(port: server.port, caPath: server.certificates.caPath)
            _ = try await first.handshake()
            _ = try await second.handshake()
            let third = try await RawConnection.open(port: server.port, caPath: server.certificates.caPath)
            #expect(try await third.closes(within: .seconds(30)))
            // The admitted connections are served on.
            try await second.send(RawFrames.call(1, method: "passion.v1.Diagnostics/Echo", message: [], flags: .endStream))
            let trailers = try #require(try await second.next(.trailers))
            #expect(try RawFrames.trailers(trailers).status == 0)
            await first.close()
            await second.close()
        }
    }

    /// The timing itself is the state machine's (ServerConnectionMachineTests.keepalive, on a
    /// clock the test moves); here, over a real socket: the PING goes out, the silence is punished.
    @Test("keepalive: a peer that does not answer the server's PING is closed")
    func keepalive() async throws {
        try await TestServer.with(configure: {
            $0.connection.keepaliveInterval = .milliseconds(150)
            $0.connection.keepaliveTimeout = .milliseconds(300)
        }) { server in
            let silent = try await RawConnection.open(port: server.port, caPath: server.certificates.caPath)
            _ = try await silent.handshake()
            #expect(try await silent.next(.ping) != nil)
            #expect(try await silent.closes(within: .seconds(30)))
        }
    }
}
