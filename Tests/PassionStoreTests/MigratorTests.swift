import Foundation
import NIOPosix
import PassionRPCServer
@testable import PassionStore
import PassionTestSupport
import Synchronization
import Testing

@Suite("Migrations")
struct MigratorTests {
    private let first = Migration(name: "0001_a", sql: "CREATE TABLE a (id int PRIMARY KEY);")
    private let second = Migration(name: "0002_b", sql: "CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b VALUES (1);")

    private func tables(_ pool: PostgresPool) async throws -> Set<String> {
        try await pool.withConnection { connection in
            Set(try await connection.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").map { try $0.require("tablename", as: String.self) })
        }
    }

    @Test("migrations apply in order once; a second run applies nothing")
    func idempotent() async throws {
        let (pool, _) = try await TestDatabase.freshPool()
        defer { Task { await pool.shutdown() } }
        #expect(try await Migrator(migrations: [second, first]).migrate(pool) == ["0001_a", "0002_b"])
        #expect(try await Migrator(migrations: [first, second]).migrate(pool) == [])
        #expect(try await tables(pool) == ["a", "b", "schema_migrations"])
        let rows = try await pool.withConnection { try await $0.query("SELECT count(*) AS n FROM b").first?.decode("n", as: Int.self) }
        #expect(rows == 1)
    }

    @Test("an applied migration whose file changed is refused with a clear error")
    func checksumMismatch() async throws {
        let (pool, _) = try await TestDatabase.freshPool()
        defer { Task { await pool.shutdown() } }
        try await Migrator(migrations: [first]).migrate(pool)
        let edited = Migration(name: "0001_a", sql: "CREATE TABLE a (id bigint PRIMARY KEY);")
        do {
            try await Migrator(migrations: [edited, second]).migrate(pool)
            Issue.record("a changed migration was accepted")
        } catch let error as MigrationError {
            #expect(error.description.contains("0001_a was changed after it was applied"))
        }
        // Nothing after the refusal ran.
        #expect(try await tables(pool) == ["a", "schema_migrations"])
    }

    @Test("a database with a migration this server does not ship is refused")
    func unknownMigration() async throws {
        let (pool, _) = try await TestDatabase.freshPool()
        defer { Task { await pool.shutdown() } }
        try await Migrator(migrations: [first, second]).migrate(pool)
        do {
            try await Migrator(migrations: [first]).migrate(pool)
            Issue.record("an older migration set was accepted")
        } catch let error as MigrationError {
            #expect(error.description.contains("0002_b"))
        }
    }

    @Test("a failing migration rolls back entirely and is not recorded")
    func failingMigration() async throws {
        let (pool, _) = try await TestDatabase.freshPool()
        defer { Task { await pool.shutdown() } }
        let broken = Migration(name: "0002_broken", sql: "CREATE TABLE c (id int); SELECT no_such_function();")
        do {
            try await Migrator(migrations: [first, broken]).migrate(pool)
            Issue.record("a broken migration succeeded")
        } catch let error as MigrationError {
            #expect(error.description.contains("0002_broken failed"))
        }
        #expect(try await tables(pool) == ["a", "schema_migrations"])
        let recorded = try await pool.withConnection { try await $0.query("SELECT name FROM schema_migrations").map { try $0.require("name", as: String.self) } }
        #expect(recorded == ["0001_a"])
    }

    @Test("migrators racing on one database apply each migration exactly once")
    func concurrentMigrators() async throws {
        let (pool, _) = try await TestDatabase.freshPool(size: 6)
        defer { Task { await pool.shutdown() } }
        let results = try await withThrowingTaskGroup(of: [String].self) { group in
            for _ in 0..<4 { group.addTask { try await Migrator(migrations: [self.first, self.second]).migrate(pool) } }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(results.sorted() == ["0001_a", "0002_b"])
    }

    @Test("the shipped migrations apply to an empty database, twice without change")
    func bundled() async throws {
        let (pool, _) = try await TestDatabase.freshPool()
        defer { Task { await pool.shutdown() } }
        let migrations = try Migration.bundled()
        #expect(!migrations.isEmpty)
        #expect(try await Migrator(migrations: migrations).migrate(pool) == migrations.map(\.name))
        #expect(try await Migrator(migrations: migrations).migrate(pool).isEmpty)
    }
}

@Suite("Embedded cluster")
struct EmbeddedPostgresTests {
    @Test("a second start reuses the cluster and its data")
    func reuse() async throws {
        let directory = "/tmp/passion-embedded-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try EmbeddedPostgres(dataDirectory: directory)
        try await onOwnThread { try cluster.start() }
        let pool = PostgresPool(configuration: PoolConfiguration(conninfo: cluster.conninfo))
        try await pool.withConnection { try await $0.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')") }
        await pool.shutdown()
        try await onOwnThread { try cluster.stop() }

        try await onOwnThread { try cluster.start() }
        let again = PostgresPool(configuration: PoolConfiguration(conninfo: cluster.conninfo))
        let value = try await again.withConnection { try await $0.query("SELECT v FROM kept").first?.decode("v", as: String.self) }
        #expect(value == "still here")
        await again.shutdown()
        try await onOwnThread { try cluster.stop() }
    }

    @Test("calls fail fast while the database is down, and the pool recovers when it returns", .timeLimit(.minutes(2)))
    func restartUnderLoad() async throws {
        let directory = "/tmp/passion-restart-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try EmbeddedPostgres(dataDirectory: directory)
        try await onOwnThread { try cluster.start() }
        defer { try? cluster.stop() }
        var configuration = PoolConfiguration(conninfo: cluster.conninfo)
        configuration.size = 4
        let pool = PostgresPool(configuration: configuration)
        defer { Task { await pool.shutdown() } }
        let done = Flag()
        let tally = Tally()
        let outcomes = try await withThrowingTaskGroup(of: (ok: Int, failed: Int).self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var ok = 0
                    var failed = 0
                    // Load runs until every phase below has been seen, however long stop and start take.
                    while !done.isSet {
                        do {
                            try await pool.withConnection { try await $0.execute("SELECT 1") }
                            ok += 1
                            tally.succeeded()
                        } catch {
                            failed += 1
                            tally.failed()
                            // A caller's pause before trying again, not a wait for anything.
                            try await Task.sleep(for: .milliseconds(20))
                        }
                    }
                    return (ok, failed)
                }
            }
            // Each phase waits for the load to show it, not for a guessed duration: calls served
            // before the stop, calls refused while it is down, and calls served after the start.
            await tally.waitForSuccesses(after: 0)
            try await onOwnThread { try cluster.stop() }
            await tally.waitForFailure()
            try await onOwnThread { try cluster.start() }
            await tally.waitForSuccesses(after: tally.successes)
            done.set()
            return try await group.reduce(into: [(ok: Int, failed: Int)]()) { $0.append($1) }
        }
        // "No call hangs": a hung call would keep its task, and the group, from ever returning,
        // and a pool that never failed or never recovered would keep a wait above from returning,
        // which the test's time limit reports; no wall-clock bound for a loaded machine to break.
        #expect(outcomes.reduce(0) { $0 + $1.failed } > 0, "the outage was not observed: \(outcomes)")
        // After the restart the pool serves again.
        #expect(try await pool.withConnection { try await $0.query("SELECT 1 AS one").count } == 1)
    }

    @Test("missing PostgreSQL binaries are reported with the package to install")
    func missingBinaries() {
        #expect {
            try EmbeddedPostgres.locateBinaries(root: "/nonexistent-\(UUID())", path: "/nonexistent")
        } throws: { error in
            (error as? EmbeddedPostgresError)?.description.contains("apt-get install postgresql") == true
        }
        #expect((try? EmbeddedPostgres.locateBinaries()) != nil, "this machine has PostgreSQL installed")
    }
}

/// A one-way switch shared by tasks.
final class Flag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}

/// Calls that succeeded and failed so far, for a test to wait on the load's phases (`Watched`).
final class Tally: Sendable {
    private let counts = Watched((successes: 0, failures: 0))
    var successes: Int { counts.value.successes }
    func succeeded() { counts.update { $0.successes += 1 } }
    func failed() { counts.update { $0.failures += 1 } }

    /// Returns once more than `count` calls have succeeded.
    func waitForSuccesses(after count: Int) async { await counts.wait { $0.successes > count } }

    /// Returns once a call has failed.
    func waitForFailure() async { await counts.wait { $0.failures > 0 } }
}
