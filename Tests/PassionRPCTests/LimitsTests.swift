import Foundation
import PassionTestSupport
import NIOCore
import PassionAPI
import PassionClient
import PassionRPC
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

    @Test("keepalive: a peer that answers PINGs stays, one that does not is closed")
    func keepalive() async throws {
        try await TestServer.with(configure: {
            // A timeout generous enough that a client starved by a loaded test machine still
            // answers in time; the silent peer is closed all the same.
            $0.connection.keepaliveInterval = .milliseconds(150)
            $0.connection.keepaliveTimeout = .seconds(1)
        }) { server in
            let silent = try await RawConnection.open(port: server.port, caPath: server.certificates.caPath)
            _ = try await silent.handshake()
            #expect(try await silent.next(.ping) != nil)
            let start = ContinuousClock.now
            #expect(try await silent.closes(within: .seconds(5)))
            #expect(ContinuousClock.now - start < .seconds(4))

            // The client library answers PINGs: its connection outlives several keepalive periods.
            let connection = try await server.connect()
            try await Task.sleep(for: .milliseconds(1500))
            #expect(try await connection.diagnostics.echo(EchoRequest()) == EchoResponse())
            await connection.close()
        }
    }
}
