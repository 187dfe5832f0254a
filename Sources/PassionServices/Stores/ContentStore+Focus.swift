import Foundation
import PassionIdentity
import PassionRPCServer
import PassionStore

/// Focus sessions.
extension ContentStore {
    /// How starting a focus session ended.
    enum FocusStart: Sendable {
        case started(UUID)
        case userNotFound
        case goalNotFound
        /// The user already has this session running or paused.
        case running(UUID)
    }

    /// A move of one session between statuses: from any of `from` to `to`; a session already
    /// in `to` is answered as it is.
    enum FocusTransition: Sendable {
        case pause, resume, abandon

        var action: String {
            switch self {
            case .pause: "focus_session.paused"
            case .resume: "focus_session.resumed"
            case .abandon: "focus_session.abandoned"
            }
        }

        var from: [String] {
            switch self {
            case .pause: ["active"]
            case .resume: ["paused"]
            case .abandon: ["active", "paused"]
            }
        }

        var to: String {
            switch self {
            case .pause: "paused"
            case .resume: "active"
            case .abandon: "abandoned"
            }
        }

        /// The SET list at the call's instant `now`.
        func assignment(_ now: Date) -> SQL {
            switch self {
            case .pause:
                """
                status = 'paused', paused_at = greatest(\(now)::timestamptz, started_at),
                focused_seconds = least(focused_seconds + greatest(extract(epoch FROM \(now)::timestamptz - coalesce(running_since, started_at)), 0)::bigint, 86400),
                running_since = NULL
                """
            case .resume: "status = 'active', paused_at = NULL, running_since = \(now)::timestamptz"
            case .abandon: "status = 'abandoned', paused_at = NULL, running_since = NULL, is_active = false"
            }
        }
    }

    /// Starts a session (at most one running or paused per user, held by a unique index) with
    /// its audit row; `minutes` nil takes the user's pomodoro length (25 by default).
    func startFocus(
        user: UUID, goal: UUID?, type: String, minutes: Int32?, notes: String?, now: Date, origin: AuditOrigin,
        deadline: ContinuousClock.Instant?
    ) async throws -> FocusStart {
        try await pool.transaction(deadline: deadline) { connection -> FocusStart in
            if let goal, try await Self.ownsGoal(goal, user: user, connection) == false { return .goalNotFound }
            let inserted = try await connection.query("""
                INSERT INTO focus_sessions (user_id, goal_id, session_type, duration_minutes, notes, started_at, running_since)
                SELECT u.id, \(goal)::uuid, \(type),
                       coalesce(\(minutes)::integer, (SELECT pomodoro_minutes FROM user_settings s WHERE s.user_id = u.id), 25),
                       \(notes), \(now), \(now)
                FROM users u WHERE u.id = \(user) AND u.deleted_at IS NULL
                ON CONFLICT (user_id) WHERE status IN ('active', 'paused') DO NOTHING
                RETURNING id
                """).first?.require("id", as: UUID.self)
            guard let inserted else {
                let running = try await connection.query("""
                    SELECT id FROM focus_sessions WHERE user_id = \(user) AND status IN ('active', 'paused')
                    """).first?.require("id", as: UUID.self)
                return running.map { .running($0) } ?? .userNotFound
            }
            try await connection.insertAudit(origin.record("focus_session.started", resourceType: "focus_session", resourceID: inserted.postgresText))
            return .started(inserted)
        }
    }

    /// Applies `transition` to session `id` under a row lock when its status allows, audited;
    /// returns the status it had, nil when the user has no such session.
    func transitionFocus(
        _ transition: FocusTransition, id: UUID, user: UUID, now: Date, origin: AuditOrigin, deadline: ContinuousClock.Instant?
    ) async throws -> String? {
        try await pool.transaction(deadline: deadline) { connection -> String? in
            guard let status = try await connection.query("""
                SELECT status FROM focus_sessions WHERE id = \(id) AND user_id = \(user) FOR UPDATE
                """).first?.require("status", as: String.self)
            else { return nil }
            if transition.from.contains(status) {
                try await connection.query("UPDATE focus_sessions SET \(transition.assignment(now)), updated_at = now() WHERE id = \(id)")
                try await connection.insertAudit(origin.record(transition.action, resourceType: "focus_session", resourceID: id.postgresText))
            }
            return status
        }
    }

    /// One call of passion_focus_complete (0012_reward_integrity.sql).
    func completeFocus(_ id: UUID, user: UUID, now: Date, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> FocusCompletionRecord {
        let audit = origin.sqlArguments
        return try await pool.result("""
            SELECT passion_focus_complete(\(user), \(id), \(now), \(audit.principal), \(audit.ip)::inet,
                                          \(audit.userAgent))::text AS result
            """, as: FocusCompletionRecord.self, deadline: deadline)
    }

    func focusSession(_ id: UUID, user: UUID, now: Date, deadline: ContinuousClock.Instant?) async throws -> FocusSessionRecord? {
        try await pool.record("""
            SELECT \(FocusSessionRecord.columns(now: now)) FROM focus_sessions f WHERE f.id = \(id) AND f.user_id = \(user)
            """, as: FocusSessionRecord.self, deadline: deadline)
    }

    /// Up to `limit` sessions of `user`, newest first, after the keyset position `after`.
    func focusSessions(
        of user: UUID, status: String?, after: (key: String, id: UUID)?, limit: Int, now: Date, deadline: ContinuousClock.Instant?
    ) async throws -> [(session: FocusSessionRecord, sortKey: String)] {
        let key = "to_char(f.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
        return try await pool.withConnection(deadline: deadline) { connection in
            try await connection.query("""
                SELECT \(FocusSessionRecord.columns(now: now)), \(unsafeSQL: key) AS sort_key
                FROM focus_sessions f
                WHERE f.user_id = \(user) AND (\(status)::text IS NULL OR f.status = \(status)::text)
                  AND (\(after?.key)::text IS NULL OR (\(unsafeSQL: key), f.id) < (\(after?.key)::text, \(after?.id)::uuid))
                ORDER BY sort_key DESC, f.id DESC
                LIMIT \(limit)
                """).map { (try FocusSessionRecord(fields: $0), try $0.require("sort_key", as: String.self)) }
        }
    }

    /// Completed focus minutes per local day of the last `days` days and per whole week
    /// (Monday first) over them; none for an unknown user.
    func focusStats(of user: UUID, days: Int, now: Date, deadline: ContinuousClock.Instant?) async throws -> FocusStatsRecord {
        let rows = try await pool.withConnection(deadline: deadline) { connection in
            try await connection.query("""
                WITH done AS (
                    SELECT (f.completed_at AT TIME ZONE coalesce(u.timezone, 'UTC'))::date AS day, f.actual_duration_minutes AS minutes
                    FROM focus_sessions f JOIN users u ON u.id = f.user_id
                    WHERE f.user_id = \(user) AND f.status = 'completed'
                      AND f.completed_at >= \(now)::timestamptz - \(days + 8)::integer * interval '1 day'
                ), local AS (
                    SELECT done.*, t.today FROM done, \(Self.today(user, now))
                ), window_days AS (
                    SELECT * FROM local WHERE day > today - \(days)::integer AND day <= today
                ), window_weeks AS (
                    -- Whole weeks: the first one starts on the Monday of the window's first day.
                    SELECT * FROM local WHERE day >= passion_period_start('weekly', today - \(days - 1)::integer) AND day <= today
                )
                SELECT 'day' AS bucket, day AS date, sum(minutes)::bigint AS minutes, count(*)::integer AS sessions
                FROM window_days GROUP BY day
                UNION ALL
                SELECT 'week', passion_period_start('weekly', day), sum(minutes)::bigint, count(*)::integer
                FROM window_weeks GROUP BY 2
                ORDER BY 1, 2
                """).map { (try $0.require("bucket", as: String.self), try FocusBucketRecord(fields: $0)) }
        }
        return FocusStatsRecord(days: rows.filter { $0.0 == "day" }.map(\.1), weeks: rows.filter { $0.0 == "week" }.map(\.1))
    }
}
