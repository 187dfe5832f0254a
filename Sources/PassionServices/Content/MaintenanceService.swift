import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

extension MaintenanceJob {
    /// Recomputes streaks from completions and pauses (never breaking one: reads do that).
    public static let streaks = MaintenanceJob(name: "streaks", action: "maintenance.streaks", resourceType: "habit") { connection, _ in
        try await connection.query("SELECT passion_recalculate_streaks() AS n").first?.require("n", as: Int.self) ?? 0
    }

    /// Archives goals completed more than 30 days ago.
    public static let archiveGoals = MaintenanceJob(name: "archive_goals", action: "maintenance.archive_goals", resourceType: "goal") { connection, now in
        try await connection.query("SELECT passion_archive_completed_goals(\(now)) AS n").first?.require("n", as: Int.self) ?? 0
    }

    /// Fails active quests whose end date passed in their user's time zone.
    public static let expiredQuests = MaintenanceJob(name: "expired_quests", action: "maintenance.expired_quests", resourceType: "quest") { connection, now in
        try await connection.query("SELECT passion_fail_expired_quests(\(now)) AS n").first?.require("n", as: Int.self) ?? 0
    }

    /// Abandons focus sessions left open for a day (they earn nothing).
    public static let staleFocusSessions = MaintenanceJob(
        name: "stale_focus_sessions", action: "maintenance.stale_focus_sessions", resourceType: "focus_session"
    ) { connection, now in
        try await connection.query("SELECT passion_abandon_stale_focus_sessions(\(now)) AS n").first?.require("n", as: Int.self) ?? 0
    }

    /// Every job the server runs daily.
    public static let all: [MaintenanceJob] = [.expiredSessions, .streaks, .archiveGoals, .expiredQuests, .staleFocusSessions]
}

/// `passion.v1.Maintenance`: the daily jobs on demand, and the integrity check, for admins.
public struct MaintenanceService: Maintenance.ServiceProtocol {
    let content: ContentContext

    init(content: ContentContext) {
        self.content = content
    }

    public func run(request: RunJobRequest, context: ServerContext) async throws -> RunJobResponse {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "maintenance.run", resourceType: "job", resourceID: String(request.job.prefix(64))) {
            guard let job = MaintenanceJob.all.first(where: { $0.name == request.job }) else {
                throw Validate.invalid("job", "must be one of \(MaintenanceJob.all.map(\.name).joined(separator: ", "))")
            }
            let changed = try await SessionMaintenance(pool: content.pool, now: content.now).run(job, origin: origin, deadline: context.deadline)
            return RunJobResponse.with {
                $0.job = job.name
                $0.affected = Int64(changed)
            }
        }
    }

    public func integrityCheck(request: IntegrityCheckRequest, context: ServerContext) async throws -> IntegrityCheckResponse {
        let problems = try await IntegrityCheck.run(content.pool)
        return IntegrityCheckResponse.with {
            $0.problems = problems.map { problem in
                PassionAPI.IntegrityProblem.with {
                    $0.check = problem.check
                    $0.detail = problem.detail
                }
            }
        }
    }
}
