import Foundation
import PassionIdentity
import PassionRPCServer
import PassionStore

/// Habits, their completions and the user's local day they are counted in.
extension ContentStore {
    // MARK: - The user's local day

    /// `t.today` (the local date), `t.local` (the local time) and the bounds of today's week and
    /// month for `user` at `now`.
    static func today(_ user: UUID, _ now: Date) -> SQL {
        "(SELECT t.* FROM users u, \(localDay(now)) WHERE u.id = \(user) AND u.deleted_at IS NULL) t"
    }

    /// `today(_:_:)`'s columns as a lateral `t` over a users row `u` of the query.
    static func localDay(_ now: Date) -> SQL {
        localDay(at: "\(now)")
    }

    /// `localDay(_:)` at an instant given as SQL: a bind, or a template's placeholder.
    static func localDay(at now: SQL) -> SQL {
        """
        LATERAL (SELECT d.today, d.local, passion_period_start('weekly', d.today) AS week_start,
                        passion_period_start('monthly', d.today) AS month_start, passion_period_end('monthly', d.today) AS month_end
                 FROM (SELECT passion_local_date(u.timezone, \(now)) AS today,
                              \(now)::timestamptz AT TIME ZONE coalesce(u.timezone, 'UTC') AS local) d) t
        """
    }

    /// Whether habit `alias` has a completion in its current period; needs `t` from
    /// `today(_:_:)`, whose period bounds are computed once per statement rather than per habit
    /// (a dashboard reads 80 habits). The habit's newest completion date answers it, except
    /// when that date lies beyond the period (dated ahead, after a move west): then the
    /// completions do.
    static func doneThisPeriod(_ alias: String) -> String {
        let start = "CASE \(alias).frequency WHEN 'daily' THEN t.today WHEN 'weekly' THEN t.week_start ELSE t.month_start END"
        let end = "CASE \(alias).frequency WHEN 'daily' THEN t.today WHEN 'weekly' THEN t.week_start + 6 ELSE t.month_end END"
        return """
            CASE WHEN \(alias).last_completed_on IS NULL OR \(alias).last_completed_on < \(start) THEN false
                 WHEN \(alias).last_completed_on <= \(end) THEN true
                 ELSE EXISTS (SELECT 1 FROM habit_completions c WHERE c.habit_id = \(alias).id
                                     AND c.completion_date BETWEEN \(start) AND \(end)) END
            """
    }

    /// `doneThisPeriod(_:)` of a habit `x`, as the dashboard counts them (built once).
    static let doneThisPeriodOfX = doneThisPeriod("x")

    /// A `HabitRecord`'s columns: the habit with the streak a reader sees and whether its
    /// current period is done; needs `t` from `today(_:_:)`.
    static let habitColumns = """
        h.*, passion_streak_shown(h.streak_days, h.streak_period, h.is_active, h.frequency, t.local) AS streak,
        \(doneThisPeriod("h")) AS done_this_period
        """

    // MARK: - Habits

    /// A habit's fields as validated; on update, only those named in the mask are written.
    struct HabitDraft: Sendable {
        var title: String?
        var description: String?
        var category: String?
        var frequency: String?
        var goal: UUID?
    }

    /// Why a habit write did not happen.
    enum HabitWriteRefusal: Error, Sendable {
        case goalNotFound, habitNotFound
    }

    /// Whether `goal` is one of the user's goals (not deleted); locks it against deletion.
    static func ownsGoal(_ goal: UUID, user: UUID, _ connection: PostgresConnection) async throws -> Bool {
        try await !connection.query("SELECT 1 FROM goals WHERE id = \(goal) AND user_id = \(user) AND is_active FOR SHARE").isEmpty
    }

    /// Inserts a habit (dated on the content clock: "did it exist yesterday" is a question of
    /// local days) with its audit row; throws `goalNotFound` for a goal that is not the user's.
    func createHabit(_ draft: HabitDraft, user: UUID, now: Date, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> UUID {
        let id = try await pool.transaction(deadline: deadline) { connection -> UUID? in
            if let goal = draft.goal, try await Self.ownsGoal(goal, user: user, connection) == false { return nil }
            let id = try await connection.query("""
                INSERT INTO habits (user_id, goal_id, title, description, category, frequency, created_at, updated_at)
                VALUES (\(user), \(draft.goal), \(draft.title), \(draft.description), \(draft.category), \(draft.frequency), \(now), \(now))
                RETURNING id
                """).first?.require("id", as: UUID.self)
            if let id { try await connection.insertAudit(origin.record("habit.created", resourceType: "habit", resourceID: id.postgresText)) }
            return id
        }
        guard let id else { throw HabitWriteRefusal.goalNotFound }
        return id
    }

    /// Writes the `fields` of habit `id` from `draft` with its audit row; a new frequency
    /// counts the streak again in the new periods.
    func updateHabit(
        _ id: UUID, user: UUID, fields: Set<String>, from draft: HabitDraft, now: Date, origin: AuditOrigin,
        deadline: ContinuousClock.Instant?
    ) async throws {
        let refusal = try await pool.transaction(deadline: deadline) { connection -> HabitWriteRefusal? in
            if let goal = draft.goal, try await Self.ownsGoal(goal, user: user, connection) == false { return .goalNotFound }
            guard try await connection.query("""
                UPDATE habits SET
                    title = CASE WHEN \(fields.contains("title")) THEN \(draft.title) ELSE title END,
                    description = CASE WHEN \(fields.contains("description")) THEN \(draft.description) ELSE description END,
                    category = CASE WHEN \(fields.contains("category")) THEN \(draft.category) ELSE category END,
                    frequency = CASE WHEN \(fields.contains("frequency")) THEN \(draft.frequency) ELSE frequency END,
                    goal_id = CASE WHEN \(fields.contains("goal_id")) THEN \(draft.goal)::uuid ELSE goal_id END,
                    updated_at = now()
                WHERE id = \(id) AND user_id = \(user)
                RETURNING id
                """).first != nil
            else { return .habitNotFound }
            if fields.contains("frequency") {
                try await connection.query("""
                    UPDATE habits h SET
                        streak_days = passion_habit_streak(h.id, h.frequency, passion_period(h.frequency, t.today)),
                        streak_period = (SELECT max(passion_period(h.frequency, c.completion_date)) FROM habit_completions c
                                         WHERE c.habit_id = h.id)
                    FROM \(Self.today(user, now))
                    WHERE h.id = \(id)
                    """)
            }
            try await connection.insertAudit(origin.record(
                "habit.updated", resourceType: "habit", resourceID: id.postgresText, details: ["fields": fields.sorted().joined(separator: ",")]))
            return nil
        }
        if let refusal { throw refusal }
    }

    /// A habit as a reader sees it at `now`.
    func habit(_ id: UUID, user: UUID, now: Date, deadline: ContinuousClock.Instant?) async throws -> HabitRecord? {
        try await pool.record("""
            SELECT \(unsafeSQL: Self.habitColumns) FROM habits h, \(Self.today(user, now))
            WHERE h.id = \(id) AND h.user_id = \(user)
            """, as: HabitRecord.self, deadline: deadline)
    }

    /// Up to `limit` habits of `user`, most recently updated first, after the keyset position `after`.
    func habits(
        of user: UUID, goal: UUID?, includeArchived: Bool, after: (key: String, id: UUID)?, limit: Int, now: Date,
        deadline: ContinuousClock.Instant?
    ) async throws -> [(habit: HabitRecord, sortKey: String)] {
        let key = "to_char(h.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
        return try await pool.withConnection(deadline: deadline) { connection in
            try await connection.query("""
                SELECT \(unsafeSQL: Self.habitColumns), \(unsafeSQL: key) AS sort_key
                FROM habits h, \(Self.today(user, now))
                WHERE h.user_id = \(user) AND (\(goal)::uuid IS NULL OR h.goal_id = \(goal)::uuid)
                  AND (NOT h.archived OR \(includeArchived))
                  AND (\(after?.key)::text IS NULL OR (\(unsafeSQL: key), h.id) < (\(after?.key)::text, \(after?.id)::uuid))
                ORDER BY sort_key DESC, h.id DESC
                LIMIT \(limit)
                """).map { (try HabitRecord(fields: $0), try $0.require("sort_key", as: String.self)) }
        }
    }

    /// The user's local date and zone at `now`, and their active habits in the order Today
    /// shows them (daily, weekly, monthly; most recently updated first); nil for an unknown user.
    func today(of user: UUID, now: Date, deadline: ContinuousClock.Instant?) async throws -> (date: LocalDate, zone: String, habits: [HabitRecord])? {
        // One row per habit, and one without a habit (id NULL) for a user who has none.
        let rows = try await pool.withConnection(deadline: deadline) { connection in
            try await connection.query("""
                SELECT t.today AS today_date, coalesce(u.timezone, 'UTC') AS today_zone, x.*
                FROM users u CROSS JOIN \(Self.localDay(now))
                LEFT JOIN LATERAL (
                    SELECT \(unsafeSQL: Self.habitColumns) FROM habits h WHERE h.user_id = u.id AND h.is_active AND NOT h.archived
                ) x ON true
                WHERE u.id = \(user) AND u.deleted_at IS NULL
                ORDER BY array_position(ARRAY['daily', 'weekly', 'monthly'], x.frequency), x.updated_at DESC, x.id
                """)
        }
        guard let first = rows.first else { return nil }
        let habits = try rows.filter { try $0.optional("id", as: UUID.self) != nil }.map { try HabitRecord(fields: $0) }
        return (try first.require("today_date", as: LocalDate.self), try first.require("today_zone", as: String.self), habits)
    }

    /// Completions of `user` (of one habit when given), newest first: by default the 30 days
    /// up to today, or up to 30 days from `from`, or back from `to`.
    func completions(
        of user: UUID, habit: UUID?, from: LocalDate?, to: LocalDate?, now: Date, deadline: ContinuousClock.Instant?
    ) async throws -> [HabitCompletionRecord] {
        try await pool.records("""
            SELECT \(unsafeSQL: HabitCompletionRecord.columns)
            FROM habit_completions c, \(Self.today(user, now))
            WHERE c.user_id = \(user) AND (\(habit)::uuid IS NULL OR c.habit_id = \(habit)::uuid)
              AND c.completion_date >= coalesce(\(from)::date, coalesce(\(to)::date, t.today) - 30)
              -- No upper bound by default: after a move west, completions dated ahead of the new
              -- local today are still the user's latest.
              AND (\(to)::date IS NULL AND \(from)::date IS NULL OR c.completion_date <= coalesce(\(to)::date, \(from)::date + 30))
            ORDER BY c.completion_date DESC, c.completed_at DESC
            """, as: HabitCompletionRecord.self, deadline: deadline)
    }

    /// Pauses or resumes habit `id` through passion_habit_set_active, audited when it changed.
    func setHabitActive(_ id: UUID, user: UUID, active: Bool, now: Date, action: String, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws {
        try await pool.transaction(deadline: deadline) { connection in
            let before = try await connection.query("SELECT is_active FROM habits WHERE id = \(id) AND user_id = \(user)").first
            try await connection.query("SELECT passion_habit_set_active(\(user), \(id), \(active), \(now))")
            if try before?.require("is_active", as: Bool.self) != active {
                try await connection.insertAudit(origin.record(action, resourceType: "habit", resourceID: id.postgresText))
            }
        }
    }

    /// Archives or unarchives habit `id`, audited when it changed; false when the user has no such habit.
    func setHabitArchived(_ id: UUID, user: UUID, archived: Bool, action: String, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> Bool {
        try await pool.transaction(deadline: deadline) { connection -> Bool in
            guard let row = try await connection.query("SELECT archived FROM habits WHERE id = \(id) AND user_id = \(user) FOR UPDATE").first
            else { return false }
            if try row.require("archived", as: Bool.self) != archived {
                try await connection.query("UPDATE habits SET archived = \(archived), updated_at = now() WHERE id = \(id)")
                try await connection.insertAudit(origin.record(action, resourceType: "habit", resourceID: id.postgresText))
            }
            return true
        }
    }

    // MARK: - Completions

    /// One call of passion_habit_complete (0012_reward_integrity.sql).
    func completeHabit(
        _ id: UUID, user: UUID, yesterday: Bool, date: LocalDate?, offlineDays: Int, now: Date, origin: AuditOrigin,
        deadline: ContinuousClock.Instant?
    ) async throws -> HabitCompletionResultRecord {
        let audit = origin.sqlArguments
        return try await pool.result("""
            SELECT passion_habit_complete(\(user), \(id), \(yesterday), \(date)::date, \(offlineDays),
                                          \(now), \(audit.principal), \(audit.ip)::inet, \(audit.userAgent))::text AS result
            """, as: HabitCompletionResultRecord.self, deadline: deadline)
    }

    /// One call of passion_habit_uncomplete (0012_reward_integrity.sql).
    func uncompleteHabit(
        completion id: UUID, user: UUID, offlineDays: Int, now: Date, origin: AuditOrigin, deadline: ContinuousClock.Instant?
    ) async throws -> HabitUncompletionRecord {
        let audit = origin.sqlArguments
        return try await pool.result("""
            SELECT passion_habit_uncomplete(\(user), \(id), \(offlineDays), \(now), \(audit.principal),
                                            \(audit.ip)::inet, \(audit.userAgent))::text AS result
            """, as: HabitUncompletionRecord.self, deadline: deadline)
    }
}
