import Foundation
import Logging
import NIOPosix
import PassionRPCServer
import PassionStore
import PassionTestSupport
import Synchronization
import Testing

@Suite("Notifications, integrity, health")
struct ListenerTests {
    private var quiet: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    @Test("NOTIFY reaches the listener; after its connection is killed it reconnects, says so, and listens again")
    func notifyAndReconnect() async throws {
        let (pool, name) = try await TestDatabase.freshPool()
        defer { Task { await pool.shutdown() } }
        let postgres = try await TestDatabase.shared()
        let listener = try NotificationListener(
            conninfo: "host=\(postgres.socketDirectory) port=5432 user=postgres dbname=\(name)", channels: ["progress_events"],
            reconnectDelay: .milliseconds(50), logger: quiet)
        let running = Task { try await listener.run() }
        defer { running.cancel() }
        var events = listener.events.makeAsyncIterator()

        // LISTEN happens on the listener's own thread: it says when it is done.
        #expect(await events.next() == .listening)
        try await notifyAndReceive(pool, payload: "first", events: &events)

        let killed = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
                WHERE application_name = 'passion-listener' AND datname = \(name)
                """).first?.decode("n", as: Int.self)
        }
        #expect(killed == 1)
        var sawReconnect = false
        while let event = await events.next() {
            if event == .reconnected {
                sawReconnect = true
                break
            }
        }
        #expect(sawReconnect)
        try await notifyAndReceive(pool, payload: "after reconnect", events: &events)
    }

    /// NOTIFYs once and waits for it: the listener listens, so it must arrive.
    private func notifyAndReceive(
        _ pool: PostgresPool, payload: String, events: inout AsyncStream<ListenerEvent>.AsyncIterator
    ) async throws {
        try await pool.withConnection { try await $0.query("SELECT pg_notify('progress_events', \(payload))") }
        while let event = await events.next() {
            if event == .notification(channel: "progress_events", payload: payload) { return }
        }
        Issue.record("no notification with payload \(payload)")
    }

    @Test("the integrity check reports nothing on a fresh schema and names a corrupted total")
    func integrity() async throws {
        let (pool, _) = try await TestDatabase.freshPool()
        defer { Task { await pool.shutdown() } }
        try await Migrator(migrations: try Migration.bundled()).migrate(pool)
        #expect(try await IntegrityCheck.run(pool) == [])
        try await pool.withConnection { connection in
            let user = try await connection.query("INSERT INTO users (email, display_name) VALUES (\("a@example.com"), \("A")) RETURNING id").first?.require("id", as: UUID.self)
            try await connection.query("INSERT INTO points_ledger (user_id, points, reason) VALUES (\(user), \(50), \("grant"))")
            // Corrupt the derived total behind the triggers' back.
            try await connection.execute("SET session_replication_role = replica")
            try await connection.query("UPDATE user_progress SET total_xp = total_xp + 7 WHERE user_id = \(user)")
            try await connection.execute("SET session_replication_role = origin")
        }
        let problems = try await IntegrityCheck.run(pool)
        #expect(problems.map(\.check).contains("progress_xp_mismatch"), "got \(problems)")
    }

    @Test("health reports the database down while it is down, and up when it returns")
    func healthFollowsDatabase() async throws {
        let directory = "/tmp/passion-health-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let changes = Changes()
        var configuration = StoreConfiguration(databaseURL: nil, dataDirectory: directory)
        configuration.healthInterval = .milliseconds(100)
        let store = try await StoreService.start(configuration, logger: quiet) { changes.record($0) }
        let running = Task { try await store.run() }
        defer { running.cancel() }
        let cluster = try #require(store.embedded)
        try await onOwnThread { try cluster.stop() }
        try await changes.wait(for: [false])
        try await onOwnThread { try cluster.start() }
        try await changes.wait(for: [false, true])
        // Cancelled (as its service group does when another service fails), the store still
        // stops the cluster it started.
        running.cancel()
        _ = await running.result
        #expect(!FileManager.default.fileExists(atPath: cluster.dataDirectory + "/postmaster.pid"), "the cluster was left running")
    }
}

/// Health transitions as StoreService reports them.
final class Changes: Sendable {
    private let values = Mutex<[Bool]>([])
    func record(_ value: Bool) { values.withLock { $0.append(value) } }

    func wait(for expected: [Bool], timeout: Duration = .seconds(15)) async throws {
        let deadline = ContinuousClock.now + timeout
        while values.withLock({ $0 }) != expected {
            guard ContinuousClock.now < deadline else {
                Issue.record("health changes \(values.withLock { $0 }), expected \(expected)")
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
