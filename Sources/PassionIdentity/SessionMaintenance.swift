import CoreMetrics
import Foundation
import Logging
import PassionMetrics
import PassionRPCServer
import PassionStore
import ServiceLifecycle

/// A maintenance job: one statement's worth of work, done as of an instant, that reports how
/// many rows it changed.
public struct MaintenanceJob: Sendable {
    /// The name in `maintenance_runs`, in the advisory lock and in admin calls.
    public let name: String
    /// The audit action its runs are recorded as.
    public let action: String
    public let resourceType: String
    let work: @Sendable (PostgresConnection, Date) async throws -> Int

    public init(
        name: String, action: String, resourceType: String, work: @escaping @Sendable (PostgresConnection, Date) async throws -> Int
    ) {
        self.name = name
        self.action = action
        self.resourceType = resourceType
        self.work = work
    }

    /// Deletes sessions that expired more than `expiredSessionRetention` ago: until then their
    /// tokens answer SESSION_EXPIRED, so a client can tell expiry (sign in again) from
    /// revocation or a token that never existed.
    public static let expiredSessions = MaintenanceJob(name: "expired_sessions", action: "sessions.purged", resourceType: "session") { connection, now in
        try await connection.query("""
            DELETE FROM sessions WHERE expires_at < \(now)::timestamptz - \(expiredSessionRetentionDays)::integer * interval '1 day'
            """).affected
    }

    /// Days an expired session is kept to answer SESSION_EXPIRED.
    public static let expiredSessionRetentionDays = 30
}

/// What one trim of progress events removed.
public struct EventTrim: Sendable, Equatable {
    /// Whole days dropped (their rows are not counted: counting would read them).
    public var partitionsDropped: Int
    /// Rows deleted one by one: from the day that straddles the window's edge, and from the
    /// default partition.
    public var rowsDeleted: Int

    public init(partitionsDropped: Int, rowsDeleted: Int) {
        self.partitionsDropped = partitionsDropped
        self.rowsDeleted = rowsDeleted
    }
}

/// What one partition maintenance did.
public struct PartitionMaintenance: Sendable, Equatable {
    /// Partitions created ahead, over the four partitioned tables.
    public var created: Int
    /// Audit partitions dropped as past the retention.
    public var auditPartitionsDropped: Int
    /// The rows they held, as PostgreSQL's statistics estimated them.
    public var auditRowsEstimate: Int
    /// What could not be done this time (a table's lock was busy), table by table.
    public var failures: [String] = []
}

/// How long the audit log is kept: forever (the default), or whole months of it dropped once
/// they end more than `days` ago.
public struct AuditRetention: Sendable, Equatable, CustomStringConvertible {
    /// Nil: keep everything.
    public let days: Int?

    /// The longest window anyone reads the audit log over: `Audit/RecentActivity` looks back
    /// up to this many days. A shorter retention would make it answer less than it promises.
    public static let shortestDays = 90
    /// Keeps every audit row.
    public static let forever = AuditRetention(days: nil)

    /// `forever`, or days like `400d`; nil for anything else or under `shortestDays`.
    public init?(parsing text: String) {
        if text == "forever" {
            self.days = nil
            return
        }
        guard text.hasSuffix("d"), let days = Int(text.dropLast()), days >= Self.shortestDays, days <= 100 * 366 else { return nil }
        self.days = days
    }

    private init(days: Int?) {
        self.days = days
    }

    public var description: String { days.map { "\($0)d" } ?? "forever" }
}

/// Runs maintenance jobs: daily by the server (one instance a day across all of them, under
/// the job's advisory lock and `maintenance_runs`) and on demand by an admin call.
public struct SessionMaintenance: Sendable {
    public static let job = MaintenanceJob.expiredSessions.name
    let pool: PostgresPool
    /// The instant jobs work as of: the content services' clock, which tests move.
    let now: @Sendable () -> Date

    public init(pool: PostgresPool, now: @escaping @Sendable () -> Date = { Date() }) {
        self.pool = pool
        self.now = now
    }

    /// Deletes every expired session now and records who asked; returns how many.
    public func purgeExpired(origin: AuditOrigin) async throws -> Int {
        try await run(.expiredSessions, origin: origin)
    }

    /// Runs `job` now, after any instance already running it finishes; records who asked.
    public func run(_ job: MaintenanceJob, origin: AuditOrigin, deadline: ContinuousClock.Instant? = nil) async throws -> Int {
        try await pool.transaction(deadline: deadline) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\("passion.maintenance." + job.name)))")
            let changed = try await job.work(connection, now())
            try await Self.recordRun(job, changed: changed, connection)
            try await connection.insertAudit(origin.record(
                job.action, resourceType: job.resourceType, userID: nil, details: ["affected": "\(changed)", "job": job.name]))
            return changed
        }
    }

    /// Runs the daily expired-session purge if due; see `runIfDue(_:interval:)`.
    public func runIfDue(interval: Duration = .seconds(86_400)) async throws -> Int? {
        try await runIfDue(.expiredSessions, interval: interval)
    }

    /// Runs `job` if no instance ran it in the last `interval`; nil when it was not due or
    /// another instance holds the job's lock.
    public func runIfDue(_ job: MaintenanceJob, interval: Duration = .seconds(86_400)) async throws -> Int? {
        let seconds = interval.components.seconds
        return try await pool.transaction { connection -> Int? in
            // Transaction-scoped: released by COMMIT or by the connection dying, never leaked.
            let locked = try await connection.query("SELECT pg_try_advisory_xact_lock(hashtext(\("passion.maintenance." + job.name))) AS locked")
            guard try locked.first?.require("locked", as: Bool.self) == true else { return nil }
            let due = try await connection.query("""
                SELECT NOT EXISTS (SELECT 1 FROM maintenance_runs WHERE job = \(job.name)
                                   AND last_run_at > now() - \(seconds) * interval '1 second') AS due
                """)
            guard try due.first?.require("due", as: Bool.self) == true else { return nil }
            let changed = try await job.work(connection, now())
            try await Self.recordRun(job, changed: changed, connection)
            try await connection.insertAudit(AuditRecord(
                userID: nil, action: job.action, resourceType: job.resourceType,
                details: ["affected": "\(changed)", "job": job.name, "schedule": "daily"], principal: "service:passion-server"))
            return changed
        }
    }

    /// Removes progress events past Subscribe's resume window (24 h, plus an hour of slack):
    /// whole days by dropping their partitions, then the rest by DELETE, in two transactions so
    /// that the DELETE never runs under the DROP's exclusive lock. Idempotent, so instances need
    /// not coordinate.
    public func trimEvents() async throws -> EventTrim {
        let cutoff = now().addingTimeInterval(-25 * 3600)
        let dropped = try await pool.transaction { connection in
            try await Self.limitLockWait(connection)
            return try await connection.query("SELECT dropped FROM passion_drop_partitions('progress_events', \(cutoff))")
                .first?.require("dropped", as: Int.self) ?? 0
        }
        let deleted = try await pool.withConnection { connection in
            try await connection.query("DELETE FROM progress_events WHERE created_at < \(cutoff)").affected
        }
        return EventTrim(partitionsDropped: dropped, rowsDeleted: deleted)
    }

    /// Creates the partitions the coming months need (days for progress events), one table per
    /// transaction (a transaction holding two tables' exclusive locks could deadlock with a call
    /// writing both), and with a retention drops whole audit partitions older than it, recording
    /// that in the audit log. Idempotent and serialized in the database, so every instance may
    /// run it; a table whose lock is not free within half a second is left for the next run
    /// (partitions are made months ahead) and reported in `failures`.
    public func maintainPartitions(auditRetention: AuditRetention) async throws -> PartitionMaintenance {
        let at = now()
        let tables = try await pool.withConnection { connection in
            try await connection.query("SELECT table_name FROM passion_partition_plan()").map { try $0.require("table_name", as: String.self) }
        }
        var outcome = PartitionMaintenance(created: 0, auditPartitionsDropped: 0, auditRowsEstimate: 0)
        for table in tables {
            do {
                outcome.created += try await pool.transaction { connection in
                    try await Self.limitLockWait(connection)
                    return try await connection.query("SELECT passion_maintain_partitions(\(table), \(at)) AS created")
                        .first?.require("created", as: Int.self) ?? 0
                }
            } catch {
                outcome.failures.append("\(table): \(error)")
            }
        }
        guard let days = auditRetention.days else { return outcome }
        do {
            (outcome.auditPartitionsDropped, outcome.auditRowsEstimate) = try await pool.transaction { connection in
                try await Self.limitLockWait(connection)
                let row = try await connection.query("""
                    SELECT dropped, rows_estimate FROM passion_drop_partitions('audit_logs', \(at)::timestamptz - \(days)::integer * interval '1 day')
                    """).first
                let dropped = try row?.require("dropped", as: Int.self) ?? 0
                let rows = try row?.require("rows_estimate", as: Int.self) ?? 0
                if dropped > 0 {
                    try await connection.insertAudit(AuditRecord(
                        userID: nil, action: "audit.partitions_dropped", resourceType: "audit_logs",
                        details: ["partitions": "\(dropped)", "rows_estimate": "\(rows)", "retention_days": "\(days)"],
                        principal: "service:passion-server"))
                }
                return (dropped, rows)
            }
        } catch {
            outcome.failures.append("audit_logs retention: \(error)")
        }
        return outcome
    }

    /// Partition DDL locks a table exclusively: waiting long for that lock would make every
    /// write to the table queue behind the wait.
    private static func limitLockWait(_ connection: PostgresConnection) async throws {
        try await connection.execute("SET LOCAL lock_timeout = '500ms'")
    }

    private static func recordRun(_ job: MaintenanceJob, changed: Int, _ connection: PostgresConnection) async throws {
        try await connection.query("""
            INSERT INTO maintenance_runs (job, last_run_at, details) VALUES (\(job.name), now(), jsonb_build_object('affected', \(changed)::int))
            ON CONFLICT (job) DO UPDATE SET last_run_at = EXCLUDED.last_run_at, details = EXCLUDED.details
            """)
    }
}

/// Checks every `checkInterval` whether each daily job is due and runs it (with many
/// instances, the advisory lock and `maintenance_runs` make each run once a day in total), and
/// trims progress events past their resume window.
public struct SessionMaintenanceService: Service {
    let maintenance: SessionMaintenance
    let jobs: [MaintenanceJob]
    let checkInterval: Duration
    let auditRetention: AuditRetention
    let logger: Logger
    private let factory: any MetricsFactory

    public init(
        pool: PostgresPool, jobs: [MaintenanceJob] = [.expiredSessions], checkInterval: Duration = .seconds(3600),
        auditRetention: AuditRetention = .forever, metrics: any MetricsFactory = NOOPMetricsHandler.instance, logger: Logger
    ) {
        self.maintenance = SessionMaintenance(pool: pool)
        self.jobs = jobs
        self.checkInterval = checkInterval
        self.auditRetention = auditRetention
        self.logger = logger
        self.factory = metrics
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            await checkOnce()
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: checkInterval) }
            } catch {
                return
            }
        }
    }

    /// One check: partitions are created ahead (and old audit ones dropped), every due job runs,
    /// then old progress events are trimmed; each step is counted under its own job label.
    public func checkOnce() async {
        var started = ContinuousClock.now
        do {
            let outcome = try await maintenance.maintainPartitions(auditRetention: auditRetention)
            record(name: "partitions", outcome: outcome.failures.isEmpty ? "ok" : "failed", since: started)
            if outcome.created > 0 || outcome.auditPartitionsDropped > 0 {
                logger.info("maintained partitions", metadata: [
                    "created": "\(outcome.created)", "audit_dropped": "\(outcome.auditPartitionsDropped)",
                    "audit_rows_estimate": "\(outcome.auditRowsEstimate)", "audit_retention": "\(auditRetention)",
                ])
            }
            if !outcome.failures.isEmpty {
                logger.warning("some partitions were not maintained; will retry", metadata: ["failures": "\(outcome.failures)"])
            }
        } catch {
            // Rows still land in the DEFAULT partitions meanwhile: nothing is refused.
            record(name: "partitions", outcome: "failed", since: started)
            logger.warning("maintaining partitions failed; will retry", metadata: ["error": "\(error)"])
        }
        for job in jobs {
            started = ContinuousClock.now
            do {
                if let changed = try await maintenance.runIfDue(job) {
                    record(job, outcome: "ok", since: started)
                    logger.info("ran maintenance job", metadata: ["job": "\(job.name)", "affected": "\(changed)"])
                } else {
                    // Not due, or another instance is running it: with many instances, each
                    // check shows here and exactly one "ok" a day in all.
                    record(job, outcome: "skipped", since: started)
                }
            } catch {
                record(job, outcome: "failed", since: started)
                logger.warning("maintenance job failed; will retry", metadata: ["job": "\(job.name)", "error": "\(error)"])
            }
        }
        started = ContinuousClock.now
        do {
            let trim = try await maintenance.trimEvents()
            record(name: "events_trim", outcome: "ok", since: started)
            if trim != EventTrim(partitionsDropped: 0, rowsDeleted: 0) {
                logger.info("trimmed old progress events", metadata: [
                    "days_dropped": "\(trim.partitionsDropped)", "deleted": "\(trim.rowsDeleted)",
                ])
            }
        } catch {
            record(name: "events_trim", outcome: "failed", since: started)
            logger.warning("trimming progress events failed; will retry", metadata: ["error": "\(error)"])
        }
    }
}

extension SessionMaintenanceService {
    /// Job names are a fixed list, so they may label.
    fileprivate func record(_ job: MaintenanceJob, outcome: String, since started: ContinuousClock.Instant) {
        record(name: job.name, outcome: outcome, since: started)
    }

    fileprivate func record(name: String, outcome: String, since started: ContinuousClock.Instant) {
        Counter(label: "passion_maintenance_runs_total", dimensions: [("job", name), ("outcome", outcome)], factory: factory)
            .increment()
        Timer(label: "passion_maintenance_duration_seconds", dimensions: [("job", name)], factory: factory)
            .record(started.duration(to: .now))
    }
}
