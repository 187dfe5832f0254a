import Foundation
import Logging
import PassionClient
import PassionIdentity
import PassionServices
import PassionStore
import PassionTelemetry
import PassionTestSupport
import Testing

/// The event stream's and the maintenance jobs' metrics, scraped after real work on a database
/// of the test's own (NOTIFY and `maintenance_runs` are per database, so the counts are exact).
@Suite("Metrics of the event stream and maintenance")
struct SubsystemMetricsTests {
    private static let quiet = Logger.quiet("subsystem-metrics")

    /// Runs `body` with a scrape function of one endpoint on a free port, stopped after it.
    private func withScrape<T>(
        _ telemetry: Telemetry, beforeScrape: @escaping @Sendable () -> Void = {},
        _ body: (() async throws -> Exposition) async throws -> T
    ) async throws -> T {
        let endpoint = OperationsEndpoint(
            host: "127.0.0.1", port: 0, registry: telemetry.registry, readiness: { nil }, beforeScrape: beforeScrape,
            logger: Self.quiet)
        let task = Task { try await endpoint.run() }
        defer { task.cancel() }
        let port = try await endpoint.port
        return try await body { Exposition(try await httpRequest(port: port, path: "/metrics").body) }
    }

    @Test("a subscriber: the gauge counts it, every notification is counted and each delivered event's lag recorded")
    func events() async throws {
        let telemetry = Telemetry()
        try await ServiceHarness.with(metrics: telemetry.factory) { harness in
            let user = try await harness.signIn()
            let stream = try await harness.connection.progress.subscribe(
                SubscribeRequest.with { $0.heartbeatSeconds = 1 }, options: .session(user.token))
            var iterator = stream.makeAsyncIterator()
            while let item = try await iterator.next() {
                if case .heartbeat? = item.item { break }
            }
            let result = try await harness.connection.progress.awardXP(options: ServiceHarness.service("progress")) {
                $0.userID = user.id
                $0.points = 1_000
                $0.reason = "grant"
                $0.idempotencyKey = UUID().uuidString
            }
            var received = 0
            while received < result.events.count, let item = try await iterator.next() {
                if case .event? = item.item { received += 1 }
            }
            let events = harness.identity.events
            let metrics = try await withScrape(telemetry, beforeScrape: { events.publishGauges() }) { try await $0() }
            #expect(metrics.value("passion_events_subscribers") == 1)
            #expect(metrics.value("passion_events_notifications_total") == Double(result.events.count))
            #expect(metrics.value("passion_events_delivery_lag_seconds_count") == Double(result.events.count))
            #expect(metrics.value("passion_events_listener_reconnects_total") == 0)
        }
    }

    @Test("a due job's run is counted once, ok, with its duration; a check that finds it not due counts as skipped")
    func maintenance() async throws {
        let telemetry = Telemetry()
        let pool = try await TestDatabase.migratedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let service = SessionMaintenanceService(
            pool: pool, jobs: [.expiredSessions], checkInterval: .seconds(3600), metrics: telemetry.factory,
            logger: Self.quiet)
        await service.checkOnce()
        await service.checkOnce()  // ran today: not due
        let metrics = try await withScrape(telemetry) { try await $0() }
        #expect(metrics.value("passion_maintenance_runs_total", ["job": "expired_sessions", "outcome": "ok"]) == 1)
        #expect(metrics.value("passion_maintenance_runs_total", ["job": "expired_sessions", "outcome": "skipped"]) == 1)
        #expect(metrics.value("passion_maintenance_duration_seconds_count", ["job": "expired_sessions"]) == 2)
        #expect(metrics.total("passion_maintenance_runs_total", ["outcome": "failed"]) == 0)
    }
}
