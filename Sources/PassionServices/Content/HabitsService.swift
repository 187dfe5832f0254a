import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Habits`: habits, completions and streaks in the user's time zone. Completing and
/// taking a completion back are in HabitCompletions.swift.
public struct HabitsService: Habits.ServiceProtocol {
    let content: ContentContext

    init(content: ContentContext) {
        self.content = content
    }

    static let fields = ["title", "description", "category", "frequency", "goal_id"]
    static let frequencies = ["daily", "weekly", "monthly"]
    static let notFound = ContentValidate.notFound("habit", field: "habit_id")
    static let goalNotFound = ContentValidate.notFound("goal", field: "habit.goal_id")

    /// A `HabitRecord`'s columns: the habit with the streak a reader sees and whether its
    /// current period is done; needs `t` from `today(_:_:)`.
    static let selectHabit = """
        h.*, passion_streak_shown(h.streak_days, h.streak_period, h.is_active, h.frequency, t.local) AS streak,
        \(doneThisPeriod("h")) AS done_this_period
        """

    /// Whether habit `alias` has a completion in its current period; needs `t` from
    /// `today(_:_:)`, whose period bounds are computed once per statement rather than per habit
    /// (a dashboard reads 80 habits). The habit's newest completion date answers it, except
    /// when that date lies beyond the period (dated ahead, after a move west): then the
    /// completions do.
    /// `doneThisPeriod(_:)` of a habit `x`, as the dashboard counts them (built once).
    static let doneThisPeriodOfX = doneThisPeriod("x")

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

    /// `t.today` (the local date), `t.local` (the local time) and the bounds of today's week and
    /// month for the acting user at `now`.
    static func today(_ user: UUID, _ now: Date) -> SQL {
        "(SELECT t.* FROM users u, \(localDay(now)) WHERE u.id = \(user) AND u.deleted_at IS NULL) t"
    }

    /// `today(_:_:)`'s columns as a lateral `t` over a users row `u` of the query.
    static func localDay(_ now: Date) -> SQL {
        """
        LATERAL (SELECT d.today, d.local, passion_period_start('weekly', d.today) AS week_start,
                        passion_period_start('monthly', d.today) AS month_start, passion_period_end('monthly', d.today) AS month_end
                 FROM (SELECT passion_local_date(u.timezone, \(now)) AS today,
                              \(now)::timestamptz AT TIME ZONE coalesce(u.timezone, 'UTC') AS local) d) t
        """
    }

    public func create(request: CreateHabitRequest, context: ServerContext) async throws -> Habit {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "habit.created", resourceType: "habit") {
            let user = try context.actingUser()
            let given = request.habit
            let title = try ContentValidate.title(given.title, field: "habit.title")
            let description = try ContentValidate.description(given.description_p, field: "habit.description")
            let category = try ContentValidate.category(given.category, field: "habit.category")
            let frequency = try given.frequency.isEmpty
                ? "daily" : ContentValidate.oneOf(given.frequency, Self.frequencies, field: "habit.frequency")
            let goal = try ContentValidate.optionalID(given.goalID, field: "habit.goal_id")
            let now = content.now()
            let id = try await content.pool.transaction(deadline: context.deadline) { connection -> UUID? in
                if let goal, try await Self.ownsGoal(goal, user: user, connection) == false { return nil }
                // Created on the content clock: "did it exist yesterday" is a question of local days.
                let id = try await connection.query("""
                    INSERT INTO habits (user_id, goal_id, title, description, category, frequency, created_at, updated_at)
                    VALUES (\(user), \(goal), \(title), \(description), \(category), \(frequency), \(now), \(now))
                    RETURNING id
                    """).first?.require("id", as: UUID.self)
                if let id { try await connection.insertAudit(origin.record("habit.created", resourceType: "habit", resourceID: id.postgresText)) }
                return id
            }
            guard let id else { throw Self.goalNotFound }
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    public func get(request: GetHabitRequest, context: ServerContext) async throws -> Habit {
        let user = try context.actingUser()
        return try await fetch(try Validate.uuid(request.habitID, field: "habit_id"), user: user, deadline: context.deadline)
    }

    public func list(request: ListHabitsRequest, context: ServerContext) async throws -> ListHabitsResponse {
        let user = try context.actingUser()
        let goal = try ContentValidate.optionalID(request.goalID, field: "goal_id")
        let size = try Validate.pageSize(request.pageSize, default: 50, maximum: 200)
        let after = try SortKeyToken.decode(request.pageToken)
        let key = "to_char(h.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
        let rows = try await content.pool.withConnection(deadline: context.deadline) { connection in
            try await connection.query("""
                SELECT \(unsafeSQL: Self.selectHabit), \(unsafeSQL: key) AS sort_key
                FROM habits h, \(Self.today(user, content.now()))
                WHERE h.user_id = \(user) AND (\(goal)::uuid IS NULL OR h.goal_id = \(goal)::uuid)
                  AND (NOT h.archived OR \(request.includeArchived))
                  AND (\(after?.key)::text IS NULL OR (\(unsafeSQL: key), h.id) < (\(after?.key)::text, \(after?.id)::uuid))
                ORDER BY sort_key DESC, h.id DESC
                LIMIT \(size + 1)
                """).map { (try HabitRecord(fields: $0), try $0.require("sort_key", as: String.self)) }
        }
        var response = ListHabitsResponse()
        response.habits = rows.prefix(size).map { Self.habit($0.0) }
        if rows.count > size, let last = rows.prefix(size).last, let habit = response.habits.last {
            response.nextPageToken = SortKeyToken.encode(key: last.1, id: habit.id)
        }
        return response
    }

    public func update(request: UpdateHabitRequest, context: ServerContext) async throws -> Habit {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "habit.updated", resourceType: "habit", resourceID: request.habit.id) {
            let user = try context.actingUser()
            let given = request.habit
            let id = try Validate.uuid(given.id, field: "habit.id")
            let fields = try Validate.mask(request.updateMask, allowed: Self.fields)
            let title = try fields.contains("title") ? ContentValidate.title(given.title, field: "habit.title") : nil
            let description = try fields.contains("description") ? ContentValidate.description(given.description_p, field: "habit.description") : nil
            let category = try fields.contains("category") ? ContentValidate.category(given.category, field: "habit.category") : nil
            let frequency = try fields.contains("frequency") ? ContentValidate.oneOf(given.frequency, Self.frequencies, field: "habit.frequency") : nil
            let goal = try fields.contains("goal_id") ? ContentValidate.optionalID(given.goalID, field: "habit.goal_id") : nil
            let now = content.now()
            let outcome = try await content.pool.transaction(deadline: context.deadline) { connection -> RPCError? in
                if let goal, try await Self.ownsGoal(goal, user: user, connection) == false { return Self.goalNotFound }
                guard try await connection.query("""
                    UPDATE habits SET
                        title = CASE WHEN \(fields.contains("title")) THEN \(title) ELSE title END,
                        description = CASE WHEN \(fields.contains("description")) THEN \(description) ELSE description END,
                        category = CASE WHEN \(fields.contains("category")) THEN \(category) ELSE category END,
                        frequency = CASE WHEN \(fields.contains("frequency")) THEN \(frequency) ELSE frequency END,
                        goal_id = CASE WHEN \(fields.contains("goal_id")) THEN \(goal)::uuid ELSE goal_id END,
                        updated_at = now()
                    WHERE id = \(id) AND user_id = \(user)
                    RETURNING id
                    """).first != nil
                else { return Self.notFound }
                if fields.contains("frequency") {
                    // Periods changed size: the streak is counted again in the new ones.
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
                    "habit.updated", resourceType: "habit", resourceID: id.postgresText,
                    details: ["fields": fields.sorted().joined(separator: ",")]))
                return nil
            }
            if let outcome { throw outcome }
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    public func pause(request: HabitRequest, context: ServerContext) async throws -> Habit {
        try await setActive(request, false, action: "habit.paused", context: context)
    }

    public func resume(request: HabitRequest, context: ServerContext) async throws -> Habit {
        try await setActive(request, true, action: "habit.resumed", context: context)
    }

    public func archive(request: HabitRequest, context: ServerContext) async throws -> Habit {
        try await setArchived(request, true, action: "habit.archived", context: context)
    }

    public func unarchive(request: HabitRequest, context: ServerContext) async throws -> Habit {
        try await setArchived(request, false, action: "habit.unarchived", context: context)
    }

    public func today(request: TodayRequest, context: ServerContext) async throws -> TodayResponse {
        let user = try context.actingUser()
        let now = content.now()
        // One row per habit, and one without a habit (id NULL) for a user who has none.
        let rows = try await content.pool.withConnection(deadline: context.deadline) { connection in
            try await connection.query("""
                SELECT t.today AS today_date, coalesce(u.timezone, 'UTC') AS today_zone, x.*
                FROM users u CROSS JOIN \(Self.localDay(now))
                LEFT JOIN LATERAL (
                    SELECT \(unsafeSQL: Self.selectHabit) FROM habits h WHERE h.user_id = u.id AND h.is_active AND NOT h.archived
                ) x ON true
                WHERE u.id = \(user) AND u.deleted_at IS NULL
                ORDER BY array_position(ARRAY['daily', 'weekly', 'monthly'], x.frequency), x.updated_at DESC, x.id
                """)
        }
        guard let first = rows.first else { throw UsersService.notFound }
        return try TodayResponse.with {
            $0.date = try first.require("today_date", as: LocalDate.self).description
            $0.timeZone = try first.require("today_zone", as: String.self)
            $0.habits = try rows.filter { try $0.optional("id", as: UUID.self) != nil }.map { row in
                let habit = Self.habit(try HabitRecord(fields: row))
                return HabitToday.with {
                    $0.habit = habit
                    $0.status = habit.doneThisPeriod ? "completed" : "pending"
                }
            }
        }
    }

    public func history(request: HistoryRequest, context: ServerContext) async throws -> HistoryResponse {
        let user = try context.actingUser()
        let habit = try ContentValidate.optionalID(request.habitID, field: "habit_id")
        let from = try ContentValidate.date(request.fromDate, field: "from_date")
        let to = try ContentValidate.date(request.toDate, field: "to_date")
        if let from, let to {
            guard from <= to else { throw Validate.invalid("to_date", "is before from_date") }
            guard to.daysSinceEpoch - from.daysSinceEpoch <= 366 else { throw Validate.invalid("to_date", "is more than 366 days after from_date") }
        }
        let now = content.now()
        let rows = try await content.pool.withConnection(deadline: context.deadline) { connection in
            try await connection.query("""
            SELECT \(unsafeSQL: HabitCompletionRecord.columns)
            FROM habit_completions c, \(Self.today(user, now))
            WHERE c.user_id = \(user) AND (\(habit)::uuid IS NULL OR c.habit_id = \(habit)::uuid)
              AND c.completion_date >= coalesce(\(from)::date, coalesce(\(to)::date, t.today) - 30)
              -- No upper bound by default: after a move west, completions dated ahead of the new
              -- local today are still the user's latest.
              AND (\(to)::date IS NULL AND \(from)::date IS NULL OR c.completion_date <= coalesce(\(to)::date, \(from)::date + 30))
            ORDER BY c.completion_date DESC, c.completed_at DESC
            """).map { try HabitCompletionRecord(fields: $0) }
        }
        if let habit, rows.isEmpty {
            // An empty history of a habit that is not the caller's must not read as "no completions".
            _ = try await fetch(habit, user: user, deadline: context.deadline)
        }
        return HistoryResponse.with { $0.completions = rows.map(Self.completion) }
    }

    // MARK: - Shared

    private func setActive(_ request: HabitRequest, _ active: Bool, action: String, context: ServerContext) async throws -> Habit {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: action, resourceType: "habit", resourceID: request.habitID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.habitID, field: "habit_id")
            let now = content.now()
            try await content.pool.transaction(deadline: context.deadline) { connection in
                let before = try await connection.query("SELECT is_active FROM habits WHERE id = \(id) AND user_id = \(user)").first
                try await connection.query("SELECT passion_habit_set_active(\(user), \(id), \(active), \(now))")
                if try before?.require("is_active", as: Bool.self) != active {
                    try await connection.insertAudit(origin.record(action, resourceType: "habit", resourceID: id.postgresText))
                }
            }
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    private func setArchived(_ request: HabitRequest, _ archived: Bool, action: String, context: ServerContext) async throws -> Habit {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: action, resourceType: "habit", resourceID: request.habitID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.habitID, field: "habit_id")
            let found = try await content.pool.transaction(deadline: context.deadline) { connection -> Bool in
                guard let row = try await connection.query("""
                    SELECT archived FROM habits WHERE id = \(id) AND user_id = \(user) FOR UPDATE
                    """).first
                else { return false }
                if try row.require("archived", as: Bool.self) != archived {
                    try await connection.query("UPDATE habits SET archived = \(archived), updated_at = now() WHERE id = \(id)")
                    try await connection.insertAudit(origin.record(action, resourceType: "habit", resourceID: id.postgresText))
                }
                return true
            }
            guard found else { throw Self.notFound }
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    func fetch(_ id: UUID, user: UUID, deadline: ContinuousClock.Instant?) async throws -> Habit {
        guard let record = try await content.record("""
            SELECT \(unsafeSQL: Self.selectHabit) FROM habits h, \(Self.today(user, content.now()))
            WHERE h.id = \(id) AND h.user_id = \(user)
            """, as: HabitRecord.self, deadline: deadline)
        else { throw Self.notFound }
        return Self.habit(record)
    }

    /// Whether `goal` is one of the user's goals (not deleted); locks it against deletion.
    static func ownsGoal(_ goal: UUID, user: UUID, _ connection: PostgresConnection) async throws -> Bool {
        try await !connection.query("SELECT 1 FROM goals WHERE id = \(goal) AND user_id = \(user) AND is_active FOR SHARE").isEmpty
    }

    static func habit(_ record: HabitRecord) -> Habit {
        var habit = Habit()
        habit.id = record.id.postgresText
        habit.goalID = ContentMessages.id(record.goalID)
        habit.title = record.title
        habit.description_p = record.description ?? ""
        habit.category = record.category ?? ""
        habit.frequency = record.frequency
        habit.streak = record.streak
        habit.totalCompletions = record.totalCompletions
        habit.paused = !record.isActive
        habit.archived = record.archived
        habit.doneThisPeriod = record.doneThisPeriod
        habit.createdAt = Google_Protobuf_Timestamp(record.createdAt)
        habit.updatedAt = Google_Protobuf_Timestamp(record.updatedAt)
        return habit
    }

    static func completion(_ record: HabitCompletionRecord) -> HabitCompletion {
        HabitCompletion.with {
            $0.id = record.id.postgresText
            $0.habitID = record.habitID.postgresText
            $0.completionDate = record.completionDate.description
            $0.completedAt = Google_Protobuf_Timestamp(record.completedAt)
        }
    }
}
