import Foundation
import PassionTestSupport
import PassionServerAPI
import PassionClient
import PassionRPCServer
import SwiftProtobuf
import Testing

/// The equivalents of gRPC's interop test cases, end to end over TLS on real sockets.
@Suite("Interop cases", .timeLimit(.minutes(2)))
struct InteropTests {
    @Test("empty_unary")
    func emptyUnary() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let response = try await connection.diagnostics.echo(EchoRequest())
            #expect(response == EchoResponse())
            await connection.close()
        }
    }

    @Test("large_unary: 314,159 bytes out, 271,828 back")
    func largeUnary() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let response = try await connection.diagnostics.echo {
                $0.payload = Data(repeating: 0, count: 314_159)
                $0.responseSize = 271_828
            }
            #expect(response.payload.count == 271_828)
            await connection.close()
        }
    }

    @Test("client_compressed_unary: compressed and uncompressed requests both arrive intact", arguments: [true, false])
    func clientCompressedUnary(compress: Bool) async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let payload = Data((0..<300_000).map { UInt8($0 % 7) })
            let response = try await connection.diagnostics.echo(
                EchoRequest.with { $0.payload = payload }, options: CallOptions(compression: compress))
            #expect(response.payload == payload)
            await connection.close()
        }
    }

    @Test("server_compressed_unary: compressed and uncompressed responses", arguments: [true, false])
    func serverCompressedUnary(compress: Bool) async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let response = try await connection.diagnostics.echo {
                $0.responseSize = 314_159
                $0.compressResponse = compress
            }
            #expect(response.payload == Data(repeating: 0x61, count: 314_159))
            await connection.close()
        }
    }

    @Test("client_streaming: 27182 + 8 + 1828 + 45904 bytes")
    func clientStreaming() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let chunks = [27182, 8, 1828, 45904].map { size in Chunk.with { $0.payload = Data(count: size) } }
            let count = try await connection.diagnostics.countBytes(chunks)
            #expect(count.messages == 4)
            #expect(count.bytes == 74922)
            await connection.close()
        }
    }

    @Test("server_streaming: messages arrive in order with their sizes")
    func serverStreaming() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let stream = try await connection.diagnostics.streamMessages(StreamRequest.with {
                $0.count = 200
                $0.size = 3000
            })
            var indexes: [Int32] = []
            for try await item in stream {
                #expect(item.payload.count == 3000)
                indexes.append(item.index)
            }
            #expect(indexes == Array(0..<200))
            await connection.close()
        }
    }

    @Test("ping_pong: one response per request, in lockstep")
    func pingPong() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let sizes = [31415, 9, 2653, 58979]
            let received = try await connection.diagnostics.echoStream { requests, responses in
                var iterator = responses.makeAsyncIterator()
                var received: [Int] = []
                for size in sizes {
                    try await requests.write(EchoRequest.with { $0.responseSize = Int32(size) })
                    received.append(try await iterator.next()?.payload.count ?? -1)
                }
                return received
            }
            #expect(received == sizes)
            await connection.close()
        }
    }

    @Test("empty_stream: a bidirectional call with no messages ends OK")
    func emptyStream() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let count = try await connection.diagnostics.echoStream { _, responses in
                // Returning half-closes; the server ends the call with no messages.
                responses
            }.reduce(0) { count, _ in count + 1 }
            #expect(count == 0)
            await connection.close()
        }
    }

    @Test("cancel_after_begin: cancelling a client stream before any message gives CANCELLED")
    func cancelAfterBegin() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let begun = Observed()
            let task = Task {
                try await connection.diagnostics.countBytes { _ in
                    // The call has begun once its writer runs; it then never writes.
                    begun.started()
                    try await Task.sleep(for: .seconds(30))
                }
            }
            await begun.waitUntil { $0.started }
            task.cancel()
            await expectRPCError(.cancelled) { try await task.value }
            // The connection still works.
            #expect(try await connection.diagnostics.echo(EchoRequest()) == EchoResponse())
            await connection.close()
        }
    }

    @Test("cancel_after_first_response: cancelling a bidirectional call after one answer")
    func cancelAfterFirstResponse() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let task = Task {
                try await connection.diagnostics.echoStream { requests, responses in
                    try await requests.write(EchoRequest.with { $0.responseSize = 10 })
                    var iterator = responses.makeAsyncIterator()
                    _ = try await iterator.next()
                    withUnsafeCurrentTask { $0?.cancel() }
                    _ = try await iterator.next()
                    return 0
                }
            }
            let result = await task.result
            switch result {
            case .success: Issue.record("the cancelled call succeeded")
            case .failure(let error):
                #expect((error as? RPCError)?.code == .cancelled || error is CancellationError, "got \(error)")
            }
            await connection.close()
        }
    }

    @Test("timeout_on_sleeping_server: DEADLINE_EXCEEDED")
    func timeoutOnSleepingServer() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            await expectRPCError(.deadlineExceeded) {
                try await connection.diagnostics.sleep(
                    SleepRequest.with { $0.durationMs = 3_600_000 }, options: CallOptions(timeout: .milliseconds(50)))
            }
            await connection.close()
        }
    }

    @Test("custom_metadata: initial and binary trailing metadata are echoed, unary and streaming")
    func customMetadata() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            var metadata = Metadata()
            metadata.add("x-echo-initial", "test_initial_metadata_value")
            metadata.add("x-echo-trailing-bin", bytes: [0xAB, 0xAB, 0xAB])
            let unary = try await connection.diagnostics.echoWithMetadata(EchoRequest(), options: CallOptions(metadata: metadata))
            #expect(unary.initialMetadata["x-echo-initial"] == "test_initial_metadata_value")
            #expect(unary.trailingMetadata.values("x-echo-trailing-bin") == [[0xAB, 0xAB, 0xAB]])

            let stream = try await connection.diagnostics.streamMessages(
                StreamRequest.with { $0.count = 2 }, options: CallOptions(metadata: metadata))
            for try await _ in stream {}
            let trailers = try await stream.trailers
            #expect(trailers.initialMetadata["x-echo-initial"] == "test_initial_metadata_value")
            #expect(trailers.trailingMetadata.values("x-echo-trailing-bin") == [[0xAB, 0xAB, 0xAB]])
            await connection.close()
        }
    }

    @Test("status_code_and_message: code, message, details and trailing metadata reach the caller")
    func statusCodeAndMessage() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let error = await expectRPCError(.failedPrecondition) {
                try await connection.diagnostics.fail(FailRequest.with {
                    $0.code = 9
                    $0.message = "test status message"
                    $0.reason = "INSUFFICIENT_FUNDS"
                    $0.fields = ["balance": "40", "price": "100"]
                    $0.trailingMetadata = ["retry-after-ms": "250"]
                })
            }
            #expect(error?.message == "test status message")
            #expect(error?.details == ErrorDetails(reason: "INSUFFICIENT_FUNDS", fields: ["balance": "40", "price": "100"]))
            #expect(error?.metadata["retry-after-ms"] == "250")
            await connection.close()
        }
    }

    @Test("special_status_message: whitespace and Unicode survive")
    func specialStatusMessage() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let text = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"
            let error = await expectRPCError(.unknown) {
                try await connection.diagnostics.fail(FailRequest.with {
                    $0.code = 2
                    $0.message = text
                })
            }
            #expect(error?.message == text)
            await connection.close()
        }
    }

    @Test("unimplemented_method and unimplemented_service")
    func unimplemented() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let method = MethodDescriptor(service: Diagnostics.serviceName, method: "NoSuchMethod", kind: .unary)
            let methodError = await expectRPCError(.unimplemented) {
                try await connection.unary(method, EchoRequest(), as: EchoResponse.self, options: .defaults)
            }
            #expect(methodError?.message == "unknown method passion.v1.Diagnostics/NoSuchMethod")
            let service = MethodDescriptor(service: "passion.v1.NoSuchService", method: "Echo", kind: .unary)
            let serviceError = await expectRPCError(.unimplemented) {
                try await connection.unary(service, EchoRequest(), as: EchoResponse.self, options: .defaults)
            }
            #expect(serviceError?.message == "unknown service passion.v1.NoSuchService")
            await connection.close()
        }
    }
}
