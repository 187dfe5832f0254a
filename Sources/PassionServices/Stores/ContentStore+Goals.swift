import Foundation
import PassionIdentity
import PassionRPCServer
import PassionStore

/// Goals and the dashboard.
extension ContentStore {
    /// A goal's fields as validated; on update, only those named in the mask are written.
    struct GoalDraft: Sendable {
        var title: String?
        var description: String?
        var category: String?
        var priority: Int32?
        var targetDate: LocalDate?
        var metadata: JSONB?
    }

    /// The orders a goal list can take; each sorts by a text key, ties broken by id.
    enum GoalOrder: String, Sendable {
        case priority, targetDate = "target_date", created

        var key: String {
            switch self {
            case .priority:
                "coalesce(g.priority, 6)::text || to_char(9999999999 - extract(epoch FROM g.created_at)::bigint, 'FM0000000000')"
            case .targetDate: "coalesce(g.target_date, date '9999-12-31')::text"
            case .created: "to_char(g.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
            }
        }

        var ascending: Bool { self != .created }
    }

    /// A state change of one goal; `condition` is NULL when it applies, 'same' when the goal
    /// is already in that state (answered as is), or the reason it cannot apply.
    enum GoalTransition: Sendable {
        case abandon, delete, restore, archive, unarchive

        var action: String {
            switch self {
            case .abandon: "goal.abandoned"
            case .delete: "goal.deleted"
            case .restore: "goal.restored"
            case .archive: "goal.archived"
            case .unarchive: "goal.unarchived"
            }
        }

        var assignment: String {
            switch self {
            case .abandon: "status = 'abandoned'"
            case .delete: "is_active = false"
            case .restore: "is_active = true"
            case .archive: "archived = true"
            case .unarchive: "archived = false"
            }
        }

        var condition: String {
            switch self {
            case .abandon:
                """
                CASE WHEN g.status = 'active' THEN NULL
                     WHEN g.status = 'abandoned' THEN 'same'
                     ELSE 'the goal is completed: only an active goal can be abandoned' END
                """
            case .delete: "CASE WHEN g.is_active THEN NULL ELSE 'same' END"
            case .restore: "CASE WHEN NOT g.is_active THEN NULL ELSE 'same' END"
            case .archive: "CASE WHEN NOT g.archived THEN NULL ELSE 'same' END"
            case .unarchive: "CASE WHEN g.archived THEN NULL ELSE 'same' END"
            }
        }

        /// Deleting and restoring apply to deleted goals too.
        var includesDeleted: Bool { self == .delete || self == .restore }
    }

    /// Inserts a goal and its audit row in one statement.
    func createGoal(_ draft: GoalDraft, user: UUID, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> GoalRecord? {
        try await pool.written("""
            WITH created AS (
                INSERT INTO goals (user_id, title, description, category, priority, target_date, metadata)
                VALUES (\(user), \(draft.title), \(draft.description), \(draft.category), \(draft.priority), \(draft.targetDate)::date,
                        \(draft.metadata ?? JSONB(json: "{}"))::jsonb)
                RETURNING *
            ), audited AS (
                INSERT INTO audit_logs (user_id, action, resource_type, resource_id, ip_address, user_agent, status, principal)
                SELECT user_id, 'goal.created', 'goal', id::text, \(origin.sqlArguments.ip)::inet, \(origin.userAgent), 'success',
                       \(origin.principal.description)
                FROM created
            )
            SELECT g.*, 0 AS habit_count FROM created g
            """, as: GoalRecord.self, deadline: deadline)
    }

    func goal(_ id: UUID, user: UUID, deadline: ContinuousClock.Instant?) async throws -> GoalRecord? {
        try await pool.record("""
            SELECT \(unsafeSQL: GoalRecord.columns) FROM goals g WHERE g.id = \(id) AND g.user_id = \(user)
            """, as: GoalRecord.self, deadline: deadline)
    }

    /// Up to `limit` goals of `user` after the keyset position `after`, each with its sort key.
    func goals(
        of user: UUID, status: String?, category: String?, archived: Bool, includeHidden: Bool, order: GoalOrder,
        after: (key: String, id: UUID)?, limit: Int, deadline: ContinuousClock.Instant?
    ) async throws -> [(goal: GoalRecord, sortKey: String)] {
        let key = order.key
        let direction = order.ascending ? ">" : "<"
        let sort = order.ascending ? "ASC" : "DESC"
        return try await pool.withConnection(deadline: deadline) { connection in
            try await connection.query("""
                SELECT \(unsafeSQL: GoalRecord.columns), \(unsafeSQL: key) AS sort_key
                FROM goals g
                WHERE g.user_id = \(user)
                  AND (\(status)::text IS NULL OR g.status = \(status)::text)
                  AND (\(category)::text IS NULL OR g.category = \(category)::text)
                  AND g.archived = \(archived)
                  AND (g.is_active OR \(includeHidden))
                  AND (\(after?.key)::text IS NULL
                       OR (\(unsafeSQL: key), g.id) \(unsafeSQL: direction) (\(after?.key)::text, \(after?.id)::uuid))
                ORDER BY sort_key \(unsafeSQL: sort), g.id \(unsafeSQL: sort)
                LIMIT \(limit)
                """).map { (try GoalRecord(fields: $0), try $0.require("sort_key", as: String.self)) }
        }
    }

    /// Writes the `fields` of goal `id` from `draft`, with its audit row; false when the user
    /// has no such goal.
    func updateGoal(
        _ id: UUID, user: UUID, fields: Set<String>, from draft: GoalDraft, origin: AuditOrigin, deadline: ContinuousClock.Instant?
    ) async throws -> Bool {
        try await pool.transaction(deadline: deadline) { connection -> Bool in
            guard try await connection.query("""
                UPDATE goals g SET
                    title = CASE WHEN \(fields.contains("title")) THEN \(draft.title) ELSE title END,
                    description = CASE WHEN \(fields.contains("description")) THEN \(draft.description) ELSE description END,
                    category = CASE WHEN \(fields.contains("category")) THEN \(draft.category) ELSE category END,
                    priority = CASE WHEN \(fields.contains("priority")) THEN \(draft.priority)::integer ELSE priority END,
                    target_date = CASE WHEN \(fields.contains("target_date")) THEN \(draft.targetDate)::date ELSE target_date END,
                    metadata = CASE WHEN \(fields.contains("metadata")) THEN \(draft.metadata)::jsonb ELSE metadata END,
                    updated_at = now()
                WHERE g.id = \(id) AND g.user_id = \(user)
                RETURNING g.id
                """).first != nil
            else { return false }
            try await connection.insertAudit(origin.record(
                "goal.updated", resourceType: "goal", resourceID: id.postgresText, details: ["fields": fields.sorted().joined(separator: ",")]))
            return true
        }
    }

    /// Applies `transition` to goal `id` under a row lock, audited when it changed anything;
    /// returns the verdict ("apply", "same", or why not), nil when the user has no such goal.
    func transitionGoal(
        _ transition: GoalTransition, id: UUID, user: UUID, origin: AuditOrigin, deadline: ContinuousClock.Instant?
    ) async throws -> String? {
        try await pool.transaction(deadline: deadline) { connection -> String? in
            guard let row = try await connection.query("""
                SELECT coalesce(\(unsafeSQL: transition.condition), 'apply') AS verdict FROM goals g
                WHERE g.id = \(id) AND g.user_id = \(user) AND (g.is_active OR \(transition.includesDeleted)) FOR UPDATE
                """).first
            else { return nil }
            let verdict = try row.require("verdict", as: String.self)
            if verdict == "apply" {
                try await connection.query("UPDATE goals g SET \(unsafeSQL: transition.assignment), updated_at = now() WHERE g.id = \(id)")
                try await connection.insertAudit(origin.record(transition.action, resourceType: "goal", resourceID: id.postgresText))
            }
            return verdict
        }
    }

    /// One call of passion_goal_complete (0012_reward_integrity.sql).
    func completeGoal(_ id: UUID, user: UUID, now: Date, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> GoalCompletionRecord {
        let audit = origin.sqlArguments
        return try await pool.result("""
            SELECT passion_goal_complete(\(user), \(id), \(now), \(audit.principal), \(audit.ip)::inet, \(audit.userAgent))::text AS result
            """, as: GoalCompletionRecord.self, deadline: deadline)
    }

    /// The home screen's counts for `user` at `now`; nil for an unknown or deleted user.
    func dashboard(of user: UUID, now: Date, deadline: ContinuousClock.Instant?) async throws -> DashboardRecord? {
        try await pool.record(Self.dashboardStatement.bind(user, now), as: DashboardRecord.self, deadline: deadline)
    }

    /// `dashboard`'s statement: the user is `$1`, the instant `$2`.
    static let dashboardStatement = SQLTemplate(parameters: 2) { p in
        """
        SELECT u.id AS user_id, u.display_name, t.today,
               coalesce(p.total_xp, 0) AS total_xp, coalesce(p.total_coins, 0) AS total_coins,
               coalesce(p.current_level, 1) AS level, coalesce(p.achievements_unlocked, 0) AS achievements_unlocked,
               passion_xp_for_level(coalesce(p.current_level, 1) + 1) AS next_level_xp,
               (SELECT count(*) FROM goals g
                WHERE g.user_id = u.id AND g.status = 'active' AND g.is_active AND NOT g.archived)::integer AS active_goals,
               h.active::integer AS active_habits, h.due::integer AS habits_due
        FROM users u
        CROSS JOIN \(localDay(at: "\(p[1])"))
        LEFT JOIN user_progress p ON p.user_id = u.id
        CROSS JOIN LATERAL (
            SELECT count(*) AS active, count(*) FILTER (WHERE NOT \(unsafeSQL: doneThisPeriodOfX)) AS due
            FROM habits x WHERE x.user_id = u.id AND x.is_active AND NOT x.archived) h
        WHERE u.id = \(p[0]) AND u.deleted_at IS NULL
        """
    }
}
