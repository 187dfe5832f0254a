import CoreMetrics
import PassionMetrics

/// The pool's metrics, its shared read connections' included. The gauges (open, idle, waiting,
/// shared) are read from the pool's state when they are scraped (`PostgresPool.publishGauges`),
/// so acquiring and releasing pay nothing for them; counts and the wait histogram are recorded
/// as things happen.
final class PoolMetrics: Sendable {
    let openConnections: Gauge
    let idleConnections: Gauge
    let waiters: Gauge
    let wait: CoreMetrics.Timer
    let opened: Counter
    let connectFailures: Counter
    let discarded: Counter
    let sharedConnections: Gauge
    /// Reads answered on a loop's shared connection, and reads that ran on a connection of their own.
    let sharedReads: Counter
    let pooledReads: Counter
    /// Schema changes met as stale prepared statements (`PlanEpoch`).
    let stalePlans: Counter
    private let statementErrors: LabelledCounters

    init(size: Int, factory: any MetricsFactory) {
        openConnections = Gauge(label: "passion_db_pool_connections", dimensions: [("state", "open")], factory: factory)
        idleConnections = Gauge(label: "passion_db_pool_connections", dimensions: [("state", "idle")], factory: factory)
        waiters = Gauge(label: "passion_db_pool_waiters", factory: factory)
        wait = Timer(label: "passion_db_pool_wait_seconds", factory: factory)
        opened = Counter(label: "passion_db_connections_opened_total", factory: factory)
        connectFailures = Counter(label: "passion_db_connection_failures_total", factory: factory)
        discarded = Counter(label: "passion_db_connections_discarded_total", factory: factory)
        sharedConnections = Gauge(label: "passion_db_shared_read_connections", factory: factory)
        sharedReads = Counter(label: "passion_db_reads_total", dimensions: [("connection", "shared")], factory: factory)
        pooledReads = Counter(label: "passion_db_reads_total", dimensions: [("connection", "own")], factory: factory)
        stalePlans = Counter(label: "passion_db_stale_plans_total", factory: factory)
        statementErrors = LabelledCounters(label: "passion_db_statement_errors_total", key: "class", factory: factory)
        Gauge(label: "passion_db_pool_size", factory: factory).record(size)
    }

    /// A statement failed: counted by SQLSTATE class (two characters, so the label stays bounded).
    func statementFailed(_ error: StoreError) {
        let sqlClass = error.sqlState.utf8.count == 5 ? String(error.sqlState.prefix(2)) : "unknown"
        statementErrors.increment(sqlClass)
    }
}
