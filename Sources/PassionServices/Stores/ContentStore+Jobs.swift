import Foundation
import PassionIdentity
import PassionStore

/// The content domain's daily jobs: each one call of a SQL function, counting what it changed.
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
