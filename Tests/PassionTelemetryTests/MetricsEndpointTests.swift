import Logging
import PassionClient
import PassionIdentity
import PassionRPCServer
import PassionServerAPI
import PassionStore
import PassionTelemetry
import PassionTestSupport
import Synchronization
import Testing

/// `/metrics`, `/ready` and `/live` over real HTTP, after known calls through a real server:
/// every counter moves by exactly what the calls did, refused and failed ones included.
@Suite("Metrics endpoint")
struct MetricsEndpointTests {
    private static let logger = Logger.quiet("metrics-tests")

    /// An endpoint on a free port for `telemetry`, running while `body` runs.
    private func withEndpoint<T>(
        _ telemetry: Telemetry, readiness: @escaping OperationsEndpoint.ReadinessCheck = { nil },
        beforeScrape: @escaping @Sendable () -> Void = {}, _ body: (Int) async throws -> T
    ) async throws -> T {
        let endpoint = OperationsEndpoint(
            host: "127.0.0.1", port: 0, registry: telemetry.registry, readiness: readiness, beforeScrape: beforeScrape,
            logger: Self.logger)
        let task = Task { try await endpoint.run() }
        defer { task.cancel() }
        return try await body(try await endpoint.port)
    }

    private func scrape(_ port: Int) async throws -> Exposition {
        let (status, body) = try await httpRequest(port: port, path: "/metrics")
        #expect(status == 200)
        return Exposition(body)
    }

    @Test("calls, their codes, durations, messages, refusals, rate limits and authentication failures")
    func callCounters() async throws {
        let telemetry = Telemetry(commit: "abc123")
        // Four anonymous calls' worth of tokens, refilled only after the test.
        try await ServiceHarness.with(metrics: telemetry.factory, configure: { $0.userRate = RateLimit(perSecond: 0.001, burst: 4) }) {
            harness in
            let connection = harness.connection
            for _ in 0..<2 { _ = try await connection.health.check(HealthCheckRequest()) }
            let unknown = MethodDescriptor(service: Diagnostics.serviceName, method: "NoSuchMethod", kind: .unary)
            await expectRPCError(.unimplemented) {
                try await connection.unary(unknown, EchoRequest(), as: EchoResponse.self, options: .defaults)
            }
            await expectRPCError(.unauthenticated) {
                try await connection.users.me(MeRequest(), options: .service(key: "not-a-configured-key"))
            }
            await expectRPCError(.notFound) { try await connection.diagnostics.fail(FailRequest.with { $0.code = 5 }) }
            _ = try await connection.health.check(HealthCheckRequest())
            await expectRPCError(.resourceExhausted) { try await connection.health.check(HealthCheckRequest()) }

            try await withEndpoint(telemetry) { port in
                let metrics = try await scrape(port)
                let check = ["service": "passion.v1.Health", "method": "Check"]
                #expect(metrics.value("passion_rpc_calls_started_total", check) == 4)
                #expect(metrics.value("passion_rpc_calls_finished_total", check.merging(["code": "OK"]) { $1 }) == 3)
                #expect(metrics.value("passion_rpc_calls_finished_total", check.merging(["code": "RESOURCE_EXHAUSTED"]) { $1 }) == 1)
                #expect(metrics.total("passion_rpc_calls_finished_total", check) == 4)
                #expect(metrics.value("passion_rpc_call_duration_seconds_count", check) == 4)
                #expect(metrics.value("passion_rpc_call_duration_seconds_bucket", check.merging(["le": "+Inf"]) { $1 }) == 4)
                #expect(metrics.value("passion_rpc_messages_received_total", check) == 4)
                #expect(metrics.value("passion_rpc_messages_sent_total", check) == 3)
                #expect(metrics.value(
                    "passion_rpc_calls_finished_total", ["method": "Me", "code": "UNAUTHENTICATED"]) == 1)
                #expect(metrics.value("passion_rpc_calls_finished_total", ["method": "Fail", "code": "NOT_FOUND"]) == 1)
                #expect(metrics.total("passion_rpc_calls_finished_total") == 6)
                #expect(metrics.value("passion_rpc_calls_refused_total", ["reason": "unimplemented"]) == 1)
                #expect(metrics.total("passion_rpc_calls_refused_total") == 1)
                #expect(metrics.value("passion_auth_failures_total", ["reason": "SERVICE_KEY_UNKNOWN"]) == 1)
                #expect(metrics.total("passion_auth_failures_total") == 1)
                #expect(metrics.value("passion_rate_limited_total", ["principal": "anonymous"]) == 1)
                #expect(metrics.total("passion_rate_limited_total") == 1)
                #expect(metrics.value("passion_rpc_calls_in_flight") == 0)
                #expect(metrics.value("passion_connections_open") == 1)
                #expect(metrics.value("passion_connections_accepted_total") == 1)
                #expect(metrics.value("passion_build_info", ["version": Telemetry.version, "commit": "abc123"]) == 1)
                #expect((metrics.value("passion_wire_bytes_received_total") ?? 0) > 0)
                #expect((metrics.value("passion_wire_bytes_sent_total") ?? 0) > 0)
                // Labels are bounded: nothing names a user, a key or a peer.
                let labelValues = metrics.samples.flatMap(\.labels.values)
                #expect(!labelValues.contains { $0.contains("not-a-configured-key") || $0.contains("127.0.0.1") })
            }
        }
    }

    @Test("the pool: statement errors by SQLSTATE class, connections opened, gauges read when scraped")
    func poolCounters() async throws {
        let telemetry = Telemetry()
        let (pool, _) = try await TestDatabase.freshPool(size: 3) { $0.metrics = telemetry.factory }
        defer { Task { await pool.shutdown() } }
        _ = try await pool.withConnection { try await $0.query("SELECT 1") }
        await #expect(throws: StoreError.self) { try await pool.withConnection { try await $0.query("SELECT 1/0") } }
        await #expect(throws: StoreError.self) { try await pool.withConnection { try await $0.query("SELECT * FROM no_such_table") } }
        try await withEndpoint(telemetry, beforeScrape: { pool.publishGauges() }) { port in
            let metrics = try await scrape(port)
            #expect(metrics.value("passion_db_statement_errors_total", ["class": "22"]) == 1)
            #expect(metrics.value("passion_db_statement_errors_total", ["class": "42"]) == 1)
            #expect(metrics.value("passion_db_connections_opened_total") == 1)
            #expect(metrics.value("passion_db_connection_failures_total") == 0)
            #expect(metrics.value("passion_db_pool_size") == 3)
            #expect(metrics.value("passion_db_pool_connections", ["state": "open"]) == 1)
            #expect(metrics.value("passion_db_pool_connections", ["state": "idle"]) == 1)
            #expect(metrics.value("passion_db_pool_waiters") == 0)
            #expect(metrics.value("passion_db_pool_wait_seconds_count") == 3)
        }
    }

    @Test("/ready answers 503 with the reason while not ready; /live, unknown paths and other methods")
    func healthEndpoints() async throws {
        let reason = Mutex<String?>(nil)
        try await withEndpoint(Telemetry(), readiness: { reason.withLock { $0 } }) { port in
            let ready = try await httpRequest(port: port, path: "/ready")
            #expect(ready.status == 200 && ready.body == "ready\n")
            reason.withLock { $0 = "database unreachable" }
            let unreachable = try await httpRequest(port: port, path: "/ready")
            #expect(unreachable.status == 503 && unreachable.body == "database unreachable\n")
            reason.withLock { $0 = "draining" }
            let draining = try await httpRequest(port: port, path: "/ready")
            #expect(draining.status == 503 && draining.body == "draining\n")
            let live = try await httpRequest(port: port, path: "/live")
            #expect(live.status == 200 && live.body == "live\n")
            let unknown = try await httpRequest(port: port, path: "/nope")
            #expect(unknown.status == 404)
            let posted = try await httpRequest(port: port, path: "/metrics", method: "POST")
            #expect(posted.status == 405)
        }
    }

    @Test("--metrics-address: HOST:PORT and [IPv6]:PORT parse; anything else is refused")
    func addresses() {
        #expect(OperationsEndpoint.parseAddress("127.0.0.1:9464").map { $0 == ("127.0.0.1", 9464) } == true)
        #expect(OperationsEndpoint.parseAddress("[::1]:0").map { $0 == ("::1", 0) } == true)
        for bad in ["", "9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", ":9464", "[::1:9464", "host:port"] {
            #expect(OperationsEndpoint.parseAddress(bad) == nil, "\(bad)")
        }
    }
}
