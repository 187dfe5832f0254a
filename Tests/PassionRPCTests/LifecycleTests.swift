import Foundation
import PassionTestSupport
import PassionServerAPI
import PassionClient
import PassionRPCServer
import SwiftProtobuf
import Synchronization
import Testing

/// Concurrency, cancellation, deadlines, shutdown, principals and the pool, end to end.
@Suite("Call lifecycle", .timeLimit(.minutes(2)))
struct LifecycleTests {
    @Test("1,000 concurrent calls on one connection all complete")
    func thousandConcurrentCalls() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let results = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<1000 {
                    group.addTask {
                        let response = try await connection.diagnostics.echo { $0.payload = Data("\(index)".utf8) }
                        return Int(String(decoding: response.payload, as: UTF8.self)) ?? -1
                    }
                }
                return try await group.reduce(into: Set<Int>()) { $0.insert($1) }
            }
            #expect(results == Set(0..<1000))
            await connection.close()
        }
    }

    @Test("cancelling a call reaches the handler as task cancellation")
    func cancellationReachesHandler() async throws {
        let observed = Observed()
        let method = MethodDescriptor(service: "test.Cancel", method: "Wait", kind: .unary)
        try await TestServer.with(routes: { router in
            router.registerUnary(method, EchoRequest.self, EchoResponse.self) { _, _ in
                observed.started()
                do {
                    try await Task.sleep(for: .seconds(30))
                } catch {
                    observed.cancelled()
                    throw error
                }
                return EchoResponse()
            }
        }) { server in
            let connection = try await server.connect()
            let call = Task { try await connection.unary(method, EchoRequest(), as: EchoResponse.self, options: .defaults) }
            await observed.waitUntil { $0.started }
            call.cancel()
            await expectRPCError(.cancelled) { try await call.value }
            await observed.waitUntil { $0.cancelled }
            await connection.close()
        }
    }

    @Test("a deadline passing on the server cancels the handler too")
    func deadlineCancelsHandler() async throws {
        let observed = Observed()
        let method = MethodDescriptor(service: "test.Cancel", method: "Wait", kind: .unary)
        try await TestServer.with(routes: { router in
            router.registerUnary(method, EchoRequest.self, EchoResponse.self) { _, context in
                observed.started()
                #expect(context.deadline != nil)
                do {
                    try await Task.sleep(for: .seconds(30))
                } catch {
                    observed.cancelled()
                }
                return EchoResponse()
            }
        }) { server in
            let connection = try await server.connect()
            await expectRPCError(.deadlineExceeded) {
                try await connection.unary(method, EchoRequest(), as: EchoResponse.self, options: CallOptions(timeout: .milliseconds(100)))
            }
            await observed.waitUntil { $0.cancelled }
            await connection.close()
        }
    }

    @Test("graceful shutdown: in-flight calls finish, new calls are refused, run() returns", .timeLimit(.minutes(1)))
    func gracefulShutdown() async throws {
        let observed = Observed()
        // The handler is held until the test lets it go, so the call is in flight however slow the machine.
        let (gate, release) = AsyncStream<Void>.makeStream()
        let method = MethodDescriptor(service: "test.Drain", method: "Slow", kind: .unary)
        let server = try await TestServer.start(routes: { router in
            router.registerUnary(method, EchoRequest.self, EchoResponse.self) { request, _ in
                observed.started()
                for await _ in gate {}
                return EchoResponse.with { $0.payload = request.payload }
            }
        })
        let connection = try await server.connect()
        let inFlight = Task {
            try await connection.unary(method, EchoRequest.with { $0.payload = Data("kept".utf8) }, as: EchoResponse.self, options: .defaults)
        }
        await observed.waitUntil { $0.started }
        let stopped = Task { await server.stop() }
        // Draining has begun once a new call on the connection is refused; only then is the held call let go.
        while true {
            do {
                _ = try await connection.diagnostics.echo(EchoRequest())
            } catch let error as RPCError where error.code == .unavailable {
                break
            }
        }
        release.finish()
        let response = try await inFlight.value
        #expect(response.message.payload == Data("kept".utf8))
        await expectRPCError(.unavailable) { try await connection.diagnostics.echo(EchoRequest()) }
        await stopped.value
        // The listener is gone.
        await expectRPCError(.unavailable) { try await server.connect() }
    }

    @Test("a method that requires a principal answers UNAUTHENTICATED to an anonymous caller")
    func requiredPrincipal() async throws {
        let method = MethodDescriptor(service: "test.Secure", method: "Read", kind: .unary, principal: .user)
        let ran = Observed()
        try await TestServer.with(routes: { router in
            router.registerUnary(method, EchoRequest.self, EchoResponse.self) { _, _ in
                ran.started()
                return EchoResponse()
            }
        }) { server in
            let connection = try await server.connect()
            let error = await expectRPCError(.unauthenticated) {
                try await connection.unary(method, EchoRequest(), as: EchoResponse.self, options: .defaults)
            }
            #expect(error?.message.contains("requires a user credential") == true)
            #expect(ran.state.started == false)
            await connection.close()
        }
    }

    @Test("a principal of the wrong kind gets PERMISSION_DENIED")
    func wrongPrincipal() async throws {
        struct UserAuthenticator: Authenticator {
            func authenticate(_ credentials: CallCredentials) async throws -> Principal {
                credentials.metadata["authorization"] == nil ? .anonymous : Principal(kind: .user, id: "u1")
            }
        }
        let method = MethodDescriptor(service: "test.Secure", method: "Admin", kind: .unary, principal: .admin)
        try await TestServer.with(authenticator: UserAuthenticator(), routes: { router in
            router.registerUnary(method, EchoRequest.self, EchoResponse.self) { _, _ in EchoResponse() }
        }) { server in
            let connection = try await server.connect()
            await expectRPCError(.permissionDenied) {
                try await connection.unary(
                    method, EchoRequest(), as: EchoResponse.self, options: CallOptions(metadata: ["authorization": "Bearer x"]))
            }
            await connection.close()
        }
    }

    @Test("a handler's unexpected error becomes UNKNOWN without leaking its text")
    func unexpectedError() async throws {
        struct Secret: Error { let sql = "SELECT * FROM users" }
        let method = MethodDescriptor(service: "test.Broken", method: "Fail", kind: .unary)
        try await TestServer.with(routes: { router in
            router.registerUnary(method, EchoRequest.self, EchoResponse.self) { _, _ in throw Secret() }
        }) { server in
            let connection = try await server.connect()
            let error = await expectRPCError(.unknown) {
                try await connection.unary(method, EchoRequest(), as: EchoResponse.self, options: .defaults)
            }
            #expect(error?.message.contains("SELECT") == false)
            await connection.close()
        }
    }

    @Test("health Check and Watch; an unknown service is NOT_FOUND for Check, SERVICE_UNKNOWN for Watch")
    func health() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            #expect(try await connection.health.check(HealthCheckRequest()).status == .serving)
            #expect(try await connection.health.check(HealthCheckRequest.with { $0.service = "passion.v1.Diagnostics" }).status == .serving)
            await expectRPCError(.notFound) { try await connection.health.check(HealthCheckRequest.with { $0.service = "nope" }) }
            let watch = try await connection.health.watch(HealthCheckRequest.with { $0.service = "nope" })
            var iterator = watch.makeAsyncIterator()
            #expect(try await iterator.next()?.status == .serviceUnknown)
            await connection.close()
        }
    }

    @Test("introspection lists services and returns descriptors with dependencies first")
    func introspection() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            let services = try await connection.introspection.listServices(ListServicesRequest()).services
            #expect(services == ["passion.v1.Diagnostics", "passion.v1.Health", "passion.v1.Introspection"])
            let files = try await connection.introspection.fileDescriptors(FileDescriptorsRequest.with { $0.symbol = "passion.v1.Diagnostics/Echo" })
                .fileDescriptors.map { try Google_Protobuf_FileDescriptorProto(serializedBytes: $0) }
            #expect(files.map(\.name) == ["google/protobuf/descriptor.proto", "passion/v1/options.proto", "passion/v1/diagnostics.proto"])
            await expectRPCError(.notFound) {
                try await connection.introspection.fileDescriptors(FileDescriptorsRequest.with { $0.symbol = "no.Such" })
            }
            await connection.close()
        }
    }

    @Test("the pool replaces a connection the server closed, transparently")
    func poolReconnects() async throws {
        // Idle long enough that a handshake and the first call on a loaded machine (the whole
        // suite at once) finish before the timer fires; the close is waited for, not slept through.
        try await TestServer.with(configure: { $0.connection.idleTimeout = .seconds(3) }) { server in
            var configuration = RPCClientConfiguration(connection: server.clientConfiguration())
            configuration.reconnectBackoff = Backoff(initial: .milliseconds(10), maximum: .milliseconds(50))
            let client = RPCClient(configuration: configuration)
            #expect(try await client.diagnostics.echo(EchoRequest()) == EchoResponse())
            let first = try await client.connection()
            // The server closes the idle connection (GOAWAY "idle"): waited for, not slept through.
            await first.closed()
            #expect(first.isUsable == false)
            #expect(try await client.diagnostics.echo(EchoRequest()) == EchoResponse())
            let second = try await client.connection()
            #expect(second !== first)
            await client.close()
        }
    }

    /// Backoffs of an hour make "waits instead of failing" a hang the time limit reports, with no
    /// wall-clock assertion for a loaded machine to break.
    @Test("the pool fails fast with UNAVAILABLE while nothing listens", .timeLimit(.minutes(1)))
    func poolFailsFast() async throws {
        let server = try await TestServer.start()
        var configuration = RPCClientConfiguration(connection: server.clientConfiguration())
        configuration.reconnectBackoff = Backoff(initial: .seconds(3600), maximum: .seconds(3600))
        configuration.retry.backoff = Backoff(initial: .seconds(3600), maximum: .seconds(3600))
        configuration.retry.maxAttempts = 1
        await server.stop()
        let client = RPCClient(configuration: configuration)
        await expectRPCError(.unavailable) { try await client.diagnostics.echo(EchoRequest()) }
        // A second call while the slot is backing off fails at once too, rather than waiting out
        // the hour.
        await expectRPCError(.unavailable) { try await client.diagnostics.echo(EchoRequest()) }
        await client.close()
    }
}

/// Flags a handler sets and a test waits for (`Watched`: no polling, no guessed duration).
final class Observed: Sendable {
    struct State: Sendable {
        var started = false
        var cancelled = false
    }

    private let watched = Watched(State())

    var state: State { watched.value }
    func started() { watched.update { $0.started = true } }
    func cancelled() { watched.update { $0.cancelled = true } }

    /// Returns once `condition` holds; records an issue if the test's time limit cancelled the wait first.
    func waitUntil(_ condition: @escaping @Sendable (State) -> Bool) async {
        let met = await watched.wait(until: condition)
        #expect(met, "the handler never got there")
    }
}

/// Events in the order tasks recorded them.
final class Log: Sendable {
    private let mutex = Mutex<[String]>([])
    var entries: [String] { mutex.withLock { $0 } }
    func append(_ entry: String) { mutex.withLock { $0.append(entry) } }
}
