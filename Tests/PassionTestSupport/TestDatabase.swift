import Foundation
import NIOPosix
import PassionStore

/// One PostgreSQL cluster per test run, started by the tests themselves with the same embedded
/// mechanism the server uses, and a fresh database per suite or test.
public enum TestDatabase {
    /// Started once; every caller awaits the same start instead of blocking a thread.
    private static let cluster = Task { () throws -> EmbeddedPostgres in
        // Every test runs in parallel with a pool of its own: far more sessions than a server needs.
        let postgres = try EmbeddedPostgres(dataDirectory: "/tmp/passion-pg-\(getpid())", maxConnections: 1000)
        try await NIOThreadPool.singleton.runIfActive { try postgres.start() }
        clusterToStop = postgres
        atexit {
            // Stop the clusters and remove their files when the test process ends, the standby first.
            for postgres in [TestDatabase.standbyToStop, TestDatabase.clusterToStop].compactMap({ $0 }) {
                try? postgres.stop()
                try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: postgres.root).deletingLastPathComponent().path)
            }
        }
        return postgres
    }

    /// A streaming hot standby of the shared cluster, started on first use: every database
    /// created on the primary appears on it.
    private static let standbyCluster = Task { () throws -> EmbeddedPostgres in
        let primary = try await cluster.value
        let standby = try EmbeddedPostgres(dataDirectory: "/tmp/passion-standby-\(getpid())", maxConnections: primary.maxConnections)
        try await NIOThreadPool.singleton.runIfActive { try standby.startStandby(of: primary) }
        standbyToStop = standby
        return standby
    }

    nonisolated(unsafe) static var standbyToStop: EmbeddedPostgres?

    public static func standby() async throws -> EmbeddedPostgres {
        try await standbyCluster.value
    }

    /// Returns once the standby has replayed everything the primary had written when called
    /// (its database included); a standby that never catches up fails after a minute.
    public static func waitForStandby(primary: PostgresPool, standby: PostgresPool) async throws {
        guard try await StandbyReplay.waitUntilReplayed(primary: primary, standby: standby, patience: .seconds(60)) else {
            throw EmbeddedPostgresError("the standby did not replay the primary's writes within a minute")
        }
    }

    /// Read by the atexit hook, which cannot capture; written once by `cluster` before the hook
    /// is registered.
    nonisolated(unsafe) static var clusterToStop: EmbeddedPostgres?

    public static func shared() async throws -> EmbeddedPostgres {
        try await cluster.value
    }

    /// A database migrated once per test run, which `migratedPool` copies: a copy costs a
    /// fraction of replaying every migration (and their partitions) for each of hundreds of tests.
    private static let template = Task { () throws -> String in
        let postgres = try await cluster.value
        let name = "passion_migrated_template"
        try await NIOThreadPool.singleton.runIfActive { try postgres.createDatabase(name) }
        var configuration = PoolConfiguration(conninfo: "host=\(postgres.socketDirectory) port=5432 user=postgres dbname=\(name)")
        configuration.size = 1
        let pool = PostgresPool(configuration: configuration)
        do {
            _ = try await Migrator(migrations: try Migration.bundled()).migrate(pool)
        } catch {
            await pool.shutdown()
            throw error
        }
        // CREATE DATABASE ... TEMPLATE waits (up to 5 s) for this session's backend to exit.
        await pool.shutdown()
        return name
    }

    /// A new database with every migration applied, and a pool on it.
    public static func migratedPool(size: Int = 8, configure: (inout PoolConfiguration) -> Void = { _ in }) async throws -> PostgresPool {
        try await migratedDatabase(size: size, configure: configure).pool
    }

    /// A new database with every migration applied, a pool on it, and its name.
    public static func migratedDatabase(
        size: Int = 8, configure: (inout PoolConfiguration) -> Void = { _ in }
    ) async throws -> (pool: PostgresPool, name: String) {
        let (pool, name) = try await freshPool(size: size, template: try await template.value, configure: configure)
        // Nothing to apply: this checks the copy is current, as the server does at start.
        _ = try await Migrator(migrations: try Migration.bundled()).migrate(pool)
        return (pool, name)
    }

    /// A new, empty database and a pool on it.
    public static func freshPool(
        size: Int = 4, template: String? = nil, configure: (inout PoolConfiguration) -> Void = { _ in }
    ) async throws -> (PostgresPool, String) {
        let postgres = try await shared()
        let name = "test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        try await NIOThreadPool.singleton.runIfActive { try postgres.createDatabase(String(name), template: template) }
        var configuration = PoolConfiguration(conninfo: "host=\(postgres.socketDirectory) port=5432 user=postgres dbname=\(name)")
        configuration.size = size
        configure(&configuration)
        return (PostgresPool(configuration: configuration), String(name))
    }
}
