import Foundation
import Logging
import PassionRPC
import PassionStore
import ServiceLifecycle

/// Deletes expired sessions: daily by the server (one instance a day across all of them) and
/// on demand by an admin call.
public struct SessionMaintenance: Sendable {
    public static let job = "expired_sessions"
    let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    /// Deletes every expired session now and records who asked; returns how many.
    public func purgeExpired(origin: AuditOrigin) async throws -> Int {
        try await pool.transaction { connection in
            let deleted = try Self.delete(connection)
            try connection.insertAudit(origin.record(
                "sessions.purged", resourceType: "session", userID: nil, details: ["deleted": "\(deleted)"]))
            return deleted
        }
    }

    /// Runs the daily purge if no instance ran it in the last `interval`; nil when it was not due
    /// or another instance holds the job's lock.
    public func runIfDue(interval: Duration = .seconds(86_400)) async throws -> Int? {
        let seconds = interval.components.seconds
        return try await pool.transaction { connection -> Int? in
            // Transaction-scoped: released by COMMIT or by the connection dying, never leaked.
            let locked = try connection.query("SELECT pg_try_advisory_xact_lock(hashtext(\("passion.maintenance." + Self.job))) AS locked")
            guard try locked.first?.require("locked", as: Bool.self) == true else { return nil }
            let due = try connection.query("""
                SELECT NOT EXISTS (SELECT 1 FROM maintenance_runs WHERE job = \(Self.job)
                                   AND last_run_at > now() - \(seconds) * interval '1 second') AS due
                """)
            guard try due.first?.require("due", as: Bool.self) == true else { return nil }
            let deleted = try Self.delete(connection)
            try connection.query("""
                INSERT INTO maintenance_runs (job, last_run_at, details) VALUES (\(Self.job), now(), jsonb_build_object('deleted', \(deleted)::int))
                ON CONFLICT (job) DO UPDATE SET last_run_at = EXCLUDED.last_run_at, details = EXCLUDED.details
                """)
            try connection.insertAudit(AuditRecord(
                userID: nil, action: "sessions.purged", resourceType: "session", details: ["deleted": "\(deleted)", "job": "daily"],
                principal: "service:passion-server"))
            return deleted
        }
    }

    /// Deletes progress events past Subscribe's resume window (24 h, plus an hour of slack).
    /// Idempotent, so instances need not coordinate.
    public func trimEvents() async throws -> Int {
        try await pool.withConnection { connection in
            try connection.query("DELETE FROM progress_events WHERE created_at < now() - interval '25 hours'").affected
        }
    }

    private static func delete(_ connection: PostgresConnection) throws -> Int {
        try connection.query("DELETE FROM sessions WHERE expires_at < now()").affected
    }
}

/// Checks every `checkInterval` whether the daily session purge is due and runs it (with many
/// instances, the advisory lock and `maintenance_runs` make it run once a day in total), and
/// trims progress events past their resume window.
public struct SessionMaintenanceService: Service {
    let maintenance: SessionMaintenance
    let checkInterval: Duration
    let logger: Logger

    public init(pool: PostgresPool, checkInterval: Duration = .seconds(3600), logger: Logger) {
        self.maintenance = SessionMaintenance(pool: pool)
        self.checkInterval = checkInterval
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                if let deleted = try await maintenance.runIfDue() {
                    logger.info("deleted expired sessions", metadata: ["deleted": "\(deleted)"])
                }
                let trimmed = try await maintenance.trimEvents()
                if trimmed > 0 { logger.info("trimmed old progress events", metadata: ["deleted": "\(trimmed)"]) }
            } catch {
                logger.warning("maintenance failed; will retry", metadata: ["error": "\(error)"])
            }
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: checkInterval) }
            } catch {
                return
            }
        }
    }
}
