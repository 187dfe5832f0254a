import CoreMetrics
import Logging
import NIOPosix
import ServiceLifecycle
import Tracing

/// Where the data lives: the embedded cluster under the data directory, or a given server.
public struct StoreConfiguration: Sendable {
    /// libpq URI or conninfo of an existing database; nil runs the embedded cluster.
    public var databaseURL: String?
    /// A hot standby of that database for reads that may lag; nil reads everything from it.
    public var readURL: String?
    /// The server's data directory; the embedded cluster lives in `<data-dir>/postgres`.
    public var dataDirectory: String
    public var poolSize: Int = 10
    public var acquireTimeout: Duration = .seconds(2)
    public var connectTimeoutSeconds: Int = 3
    public var statementCacheSize: Int = 256
    /// Where the pool's metrics go. Default: nowhere.
    public var metrics: any MetricsFactory = NOOPMetricsHandler.instance
    /// A span per statement; default nil, nothing traced.
    public var tracer: (any Tracer)?
    /// How often the health monitor checks the database. Default 1 s.
    public var healthInterval: Duration = .seconds(1)

    public init(databaseURL: String?, dataDirectory: String) {
        self.databaseURL = databaseURL
        self.dataDirectory = dataDirectory
    }
}

/// The database for the server's lifetime: starts the embedded cluster when no URL is given,
/// applies migrations before the server accepts calls, reports reachability to health while
/// running, and stops the cluster after the server has drained.
public final class StoreService: Service, Sendable {
    public let pool: PostgresPool
    /// On `StoreConfiguration.readURL`, when set: never migrated, never written.
    public let readPool: PostgresPool?
    public let embedded: EmbeddedPostgres?
    private let configuration: StoreConfiguration
    private let logger: Logger
    private let onHealthChange: @Sendable (Bool) -> Void

    /// Starts (or reuses) the database and migrates it; throws with a clear message when the
    /// PostgreSQL binaries are missing, the database is unreachable or a migration changed.
    public static func start(
        _ configuration: StoreConfiguration, logger: Logger, onHealthChange: @escaping @Sendable (Bool) -> Void
    ) async throws -> StoreService {
        var embedded: EmbeddedPostgres?
        let conninfo: String
        if let url = configuration.databaseURL {
            conninfo = url
        } else {
            let cluster = try EmbeddedPostgres(dataDirectory: configuration.dataDirectory)
            logger.info("starting embedded PostgreSQL", metadata: ["directory": "\(cluster.root)"])
            // initdb and pg_ctl block for seconds: never on the cooperative pool.
            try await NIOThreadPool.singleton.runIfActive { try cluster.start() }
            embedded = cluster
            conninfo = cluster.conninfo
        }
        var poolConfiguration = PoolConfiguration(conninfo: conninfo)
        poolConfiguration.size = configuration.poolSize
        poolConfiguration.acquireTimeout = configuration.acquireTimeout
        poolConfiguration.connectTimeoutSeconds = configuration.connectTimeoutSeconds
        poolConfiguration.statementCacheSize = configuration.statementCacheSize
        poolConfiguration.metrics = configuration.metrics
        poolConfiguration.tracer = configuration.tracer
        let pool = PostgresPool(configuration: poolConfiguration)
        do {
            let applied = try await Migrator(migrations: try Migration.bundled()).migrate(pool)
            if !applied.isEmpty { logger.info("applied migrations", metadata: ["migrations": "\(applied.joined(separator: ", "))"]) }
        } catch {
            await pool.shutdown()
            if let embedded { await Self.stop(embedded) }
            throw error
        }
        let readPool = configuration.readURL.map { url in
            var readConfiguration = poolConfiguration
            readConfiguration.conninfo = url
            // Its families would collide with the primary pool's: the standby's pool records none.
            readConfiguration.metrics = NOOPMetricsHandler.instance
            return PostgresPool(configuration: readConfiguration)
        }
        return StoreService(
            pool: pool, readPool: readPool, embedded: embedded, configuration: configuration, logger: logger,
            onHealthChange: onHealthChange)
    }

    private init(
        pool: PostgresPool, readPool: PostgresPool?, embedded: EmbeddedPostgres?, configuration: StoreConfiguration, logger: Logger,
        onHealthChange: @escaping @Sendable (Bool) -> Void
    ) {
        self.pool = pool
        self.readPool = readPool
        self.embedded = embedded
        self.configuration = configuration
        self.logger = logger
        self.onHealthChange = onHealthChange
    }

    /// Watches the database until graceful shutdown, then closes the pool and the cluster.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await self.monitorHealth()
        }
        await pool.shutdown()
        await readPool?.shutdown()
        if let embedded {
            logger.info("stopping embedded PostgreSQL")
            await Self.stop(embedded)
        }
    }

    /// Stops the cluster even when the caller is cancelled: when another service of the group
    /// fails (the RPC port taken, say), the group cancels this one, and a cancelled
    /// `runIfActive` would never run the stop, leaving the cluster behind.
    static func stop(_ cluster: EmbeddedPostgres) async {
        await Task.detached {
            _ = try? await NIOThreadPool.singleton.runIfActive { try cluster.stop() }
        }.value
    }

    private func monitorHealth() async {
        var healthy = true
        while !Task.isCancelled {
            let reachable: Bool
            do {
                try await pool.withConnection(deadline: .now + .seconds(2)) { try await $0.execute("SELECT 1") }
                reachable = true
            } catch {
                reachable = false
            }
            if reachable != healthy {
                healthy = reachable
                if reachable {
                    logger.notice("database reachable again")
                } else {
                    logger.error("database unreachable")
                }
                onHealthChange(reachable)
            }
            try? await Task.sleep(for: configuration.healthInterval)
        }
    }
}
