import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.FocusSessions`: one running session per user, paid by the minute on completion
/// (`passion_focus_complete`).
public struct FocusSessionsService: FocusSessions.ServiceProtocol {
    let content: ContentContext

    init(content: ContentContext) {
        self.content = content
    }

    static let statuses = ["abandoned", "active", "completed", "paused"]
    static let notFound = ContentValidate.notFound("focus session", field: "session_id")

    public func start(request: StartFocusRequest, context: ServerContext) async throws -> FocusSession {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "focus_session.started", resourceType: "focus_session") {
            let user = try context.actingUser()
            let type = try ContentValidate.oneOf(request.sessionType, ["custom", "pomodoro"], field: "session_type")
            if type == "custom" {
                guard (1...480).contains(request.durationMinutes) else { throw Validate.invalid("duration_minutes", "must be 1–480 for a custom session") }
            } else if request.durationMinutes != 0 {
                throw Validate.invalid("duration_minutes", "a pomodoro lasts the pomodoro_minutes setting: leave it 0")
            }
            let goal = try ContentValidate.optionalID(request.goalID, field: "goal_id")
            let notes = try ContentValidate.description(request.notes, field: "notes")
            let now = content.now()
            let outcome = try await content.pool.transaction(deadline: context.deadline) { connection -> Result<UUID, RPCError> in
                if let goal, try await HabitsService.ownsGoal(goal, user: user, connection) == false {
                    return .failure(ContentValidate.notFound("goal", field: "goal_id"))
                }
                let inserted = try await connection.query("""
                    INSERT INTO focus_sessions (user_id, goal_id, session_type, duration_minutes, notes, started_at, running_since)
                    SELECT u.id, \(goal)::uuid, \(type),
                           coalesce(\(type == "custom" ? request.durationMinutes : nil)::integer,
                                    (SELECT pomodoro_minutes FROM user_settings s WHERE s.user_id = u.id), 25),
                           \(notes), \(now), \(now)
                    FROM users u WHERE u.id = \(user) AND u.deleted_at IS NULL
                    ON CONFLICT (user_id) WHERE status IN ('active', 'paused') DO NOTHING
                    RETURNING id
                    """).first?.require("id", as: UUID.self)
                guard let inserted else {
                    let running = try await connection.query("""
                        SELECT id FROM focus_sessions WHERE user_id = \(user) AND status IN ('active', 'paused')
                        """).first?.require("id", as: UUID.self)
                    guard let running else { return .failure(UsersService.notFound) }
                    return .failure(RPCError(
                        code: .failedPrecondition, message: "a focus session is already running: complete or abandon it first",
                        details: ErrorDetails(reason: "FOCUS_SESSION_RUNNING", fields: ["session_id": running.postgresText])))
                }
                try await connection.insertAudit(origin.record(
                    "focus_session.started", resourceType: "focus_session", resourceID: inserted.postgresText))
                return .success(inserted)
            }
            return try await fetch(try outcome.get(), user: user, deadline: context.deadline)
        }
    }

    public func pause(request: FocusSessionRequest, context: ServerContext) async throws -> FocusSession {
        try await transition(request, context: context, action: "focus_session.paused", from: "active", to: "paused") { now in
            """
            status = 'paused', paused_at = greatest(\(now)::timestamptz, started_at),
            focused_seconds = least(focused_seconds + greatest(extract(epoch FROM \(now)::timestamptz - coalesce(running_since, started_at)), 0)::bigint, 86400),
            running_since = NULL
            """
        }
    }

    public func resume(request: FocusSessionRequest, context: ServerContext) async throws -> FocusSession {
        try await transition(request, context: context, action: "focus_session.resumed", from: "paused", to: "active") { now in
            "status = 'active', paused_at = NULL, running_since = \(now)::timestamptz"
        }
    }

    public func abandon(request: FocusSessionRequest, context: ServerContext) async throws -> FocusSession {
        try await transition(request, context: context, action: "focus_session.abandoned", from: "active|paused", to: "abandoned") { _ in
            "status = 'abandoned', paused_at = NULL, running_since = NULL, is_active = false"
        }
    }

    public func complete(request: FocusSessionRequest, context: ServerContext) async throws -> CompleteFocusResponse {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(
            origin, action: "focus_session.completed", resourceType: "focus_session", resourceID: request.sessionID
        ) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.sessionID, field: "session_id")
            let audit = origin.sqlArguments
            guard let result = try await content.document("""
                SELECT passion_focus_complete(\(user), \(id), \(content.now()), \(audit.principal), \(audit.ip)::inet,
                                              \(audit.userAgent))::text AS result
                """, deadline: context.deadline)
            else { throw RPCError(code: .internal, message: "completion returned nothing") }
            return try CompleteFocusResponse.with {
                $0.session = Self.session(try result.requireRecord("session"))
                $0.reward = try ContentMessages.reward(result)
                $0.quests = ContentMessages.quests(try result.records("quests"))
            }
        }
    }

    public func list(request: ListFocusSessionsRequest, context: ServerContext) async throws -> ListFocusSessionsResponse {
        let user = try context.actingUser()
        let status = try request.status.isEmpty ? nil : ContentValidate.oneOf(request.status, Self.statuses, field: "status")
        let size = try Validate.pageSize(request.pageSize, default: 20, maximum: 100)
        let after = try SortKeyToken.decode(request.pageToken)
        let key = "to_char(f.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
        let rows = try await content.pool.withConnection(deadline: context.deadline) { connection in
            try await connection.query("""
                SELECT \(FocusSessionRecord.columns(now: content.now())), \(unsafeSQL: key) AS sort_key
                FROM focus_sessions f
                WHERE f.user_id = \(user) AND (\(status)::text IS NULL OR f.status = \(status)::text)
                  AND (\(after?.key)::text IS NULL OR (\(unsafeSQL: key), f.id) < (\(after?.key)::text, \(after?.id)::uuid))
                ORDER BY sort_key DESC, f.id DESC
                LIMIT \(size + 1)
                """).map { (try FocusSessionRecord(fields: $0), try $0.require("sort_key", as: String.self)) }
        }
        var response = ListFocusSessionsResponse()
        response.sessions = rows.prefix(size).map { Self.session($0.0) }
        if rows.count > size, let last = rows.prefix(size).last, let session = response.sessions.last {
            response.nextPageToken = SortKeyToken.encode(key: last.1, id: session.id)
        }
        return response
    }

    public func stats(request: FocusStatsRequest, context: ServerContext) async throws -> FocusStatsResponse {
        let user = try context.actingUser()
        guard (0...366).contains(request.days) else { throw Validate.invalid("days", "must be 1–366, or 0 for 7") }
        let days = request.days == 0 ? 7 : Int(request.days)
        guard let result = try await content.document("""
            WITH done AS (
                SELECT (f.completed_at AT TIME ZONE coalesce(u.timezone, 'UTC'))::date AS day, f.actual_duration_minutes AS minutes
                FROM focus_sessions f JOIN users u ON u.id = f.user_id
                WHERE f.user_id = \(user) AND f.status = 'completed'
                  AND f.completed_at >= \(content.now())::timestamptz - \(days + 8)::integer * interval '1 day'
            ), local AS (
                SELECT done.*, t.today FROM done, \(HabitsService.today(user, content.now()))
            ), window_days AS (
                SELECT * FROM local WHERE day > today - \(days)::integer AND day <= today
            ), window_weeks AS (
                -- Whole weeks: the first one starts on the Monday of the window's first day.
                SELECT * FROM local WHERE day >= passion_period_start('weekly', today - \(days - 1)::integer) AND day <= today
            )
            SELECT jsonb_build_object(
                'days', coalesce((SELECT jsonb_agg(jsonb_build_object('date', day, 'minutes', minutes, 'sessions', sessions) ORDER BY day)
                                  FROM (SELECT day, sum(minutes) AS minutes, count(*) AS sessions FROM window_days GROUP BY day) d), '[]'),
                'weeks', coalesce((SELECT jsonb_agg(jsonb_build_object('date', week, 'minutes', minutes, 'sessions', sessions) ORDER BY week)
                                   FROM (SELECT passion_period_start('weekly', day) AS week, sum(minutes) AS minutes, count(*) AS sessions
                                         FROM window_weeks GROUP BY 1) w), '[]'),
                'total', (SELECT coalesce(sum(minutes), 0) FROM window_days))::text AS result
            """, deadline: context.deadline)
        else { throw UsersService.notFound }
        func buckets(_ name: String) throws -> [DayMinutes] {
            try result.records(name, as: FocusBucketRecord.self).map { bucket in
                DayMinutes.with {
                    $0.date = bucket.date.description
                    $0.minutes = bucket.minutes
                    $0.sessions = bucket.sessions
                }
            }
        }
        return try FocusStatsResponse.with {
            $0.days = try buckets("days")
            $0.weeks = try buckets("weeks")
            $0.totalMinutes = try result.require("total", as: Int64.self)
        }
    }

    // MARK: - Shared

    /// Moves one session from a status in `from` ("a|b") to `to`; a session already in `to`
    /// is answered as is. `set` makes the SET list for the call's instant.
    private func transition(
        _ request: FocusSessionRequest, context: ServerContext, action: String, from: String, to: String,
        _ set: @escaping @Sendable (Date) -> SQL
    ) async throws -> FocusSession {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: action, resourceType: "focus_session", resourceID: request.sessionID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.sessionID, field: "session_id")
            let now = content.now()
            let allowed = from.split(separator: "|").map(String.init)
            let status = try await content.pool.transaction(deadline: context.deadline) { connection -> String? in
                guard let status = try await connection.query("""
                    SELECT status FROM focus_sessions WHERE id = \(id) AND user_id = \(user) FOR UPDATE
                    """).first?.require("status", as: String.self)
                else { return nil }
                if allowed.contains(status) {
                    try await connection.query("UPDATE focus_sessions SET \(set(now)), updated_at = now() WHERE id = \(id)")
                    try await connection.insertAudit(origin.record(action, resourceType: "focus_session", resourceID: id.postgresText))
                }
                return status
            }
            guard let status else { throw Self.notFound }
            guard allowed.contains(status) || status == to else {
                throw RPCError(
                    code: .failedPrecondition, message: "the focus session is \(status)",
                    details: ErrorDetails(reason: "FOCUS_SESSION_ENDED", fields: ["status": status]))
            }
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    func fetch(_ id: UUID, user: UUID, deadline: ContinuousClock.Instant?) async throws -> FocusSession {
        guard let record = try await content.record("""
            SELECT \(FocusSessionRecord.columns(now: content.now())) FROM focus_sessions f WHERE f.id = \(id) AND f.user_id = \(user)
            """, as: FocusSessionRecord.self, deadline: deadline)
        else { throw Self.notFound }
        return Self.session(record)
    }

    static func session(_ record: FocusSessionRecord) -> FocusSession {
        var session = FocusSession()
        session.id = record.id.postgresText
        session.goalID = ContentMessages.id(record.goalID)
        session.sessionType = record.sessionType ?? ""
        session.durationMinutes = record.durationMinutes
        session.actualDurationMinutes = record.actualDurationMinutes ?? 0
        session.status = record.status
        session.notes = record.notes ?? ""
        session.focusedSeconds = record.focusedSeconds
        session.startedAt = Google_Protobuf_Timestamp(record.startedAt)
        if let at = record.pausedAt { session.pausedAt = Google_Protobuf_Timestamp(at) }
        if let at = record.completedAt { session.completedAt = Google_Protobuf_Timestamp(at) }
        return session
    }
}
