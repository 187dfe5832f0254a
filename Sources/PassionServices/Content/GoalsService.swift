import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Goals`: the caller's goals, their completion rewards, and the dashboard.
public struct GoalsService: Goals.ServiceProtocol {
    let content: ContentContext

    init(content: ContentContext) {
        self.content = content
    }

    static let fields = ["title", "description", "category", "priority", "target_date", "metadata"]
    static let statuses = ["active", "completed", "abandoned"]
    static let notFound = ContentValidate.notFound("goal", field: "goal_id")

    public func create(request: CreateGoalRequest, context: ServerContext) async throws -> Goal {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "goal.created", resourceType: "goal") {
            let user = try context.actingUser()
            let given = request.goal
            let title = try ContentValidate.title(given.title, field: "goal.title")
            let description = try ContentValidate.description(given.description_p, field: "goal.description")
            let category = try ContentValidate.category(given.category, field: "goal.category")
            let priority = try Self.priority(given.priority)
            let target = try ContentValidate.date(given.targetDate, field: "goal.target_date")
            let metadata = try ContentValidate.metadata(given.metadata, field: "goal.metadata")
            let record = try await content.record("""
                WITH created AS (
                    INSERT INTO goals (user_id, title, description, category, priority, target_date, metadata)
                    VALUES (\(user), \(title), \(description), \(category), \(priority), \(target)::date, \(metadata)::jsonb)
                    RETURNING *
                ), audited AS (
                    INSERT INTO audit_logs (user_id, action, resource_type, resource_id, ip_address, user_agent, status, principal)
                    SELECT user_id, 'goal.created', 'goal', id::text, \(origin.sqlArguments.ip)::inet, \(origin.userAgent), 'success',
                           \(origin.principal.description)
                    FROM created
                )
                SELECT g.*, 0 AS habit_count FROM created g
                """, as: GoalRecord.self, deadline: context.deadline)
            guard let record else { throw RPCError(code: .internal, message: "insert returned nothing") }
            return try Self.goal(record)
        }
    }

    public func get(request: GetGoalRequest, context: ServerContext) async throws -> Goal {
        let user = try context.actingUser()
        let id = try Validate.uuid(request.goalID, field: "goal_id")
        return try await fetch(id, user: user, deadline: context.deadline)
    }

    public func list(request: ListGoalsRequest, context: ServerContext) async throws -> ListGoalsResponse {
        let user = try context.actingUser()
        let status = try request.status.isEmpty ? nil : ContentValidate.oneOf(request.status, Self.statuses, field: "status")
        let category = try ContentValidate.category(request.category, field: "category")
        let size = try Validate.pageSize(request.pageSize, default: 20, maximum: 100)
        // Keys that sort as text in the list's order, ties broken by id.
        let key: String
        let direction: String
        let orderName: String
        switch request.order {
        case .priority, .UNRECOGNIZED:
            key = "coalesce(g.priority, 6)::text || to_char(9999999999 - extract(epoch FROM g.created_at)::bigint, 'FM0000000000')"
            direction = ">"
            orderName = "priority"
        case .targetDate:
            key = "coalesce(g.target_date, date '9999-12-31')::text"
            direction = ">"
            orderName = "target_date"
        case .created:
            key = "to_char(g.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
            direction = "<"
            orderName = "created"
        }
        let after = try SortKeyToken.decode(request.pageToken, order: orderName)
        let order = direction == ">" ? "ASC" : "DESC"
        let rows = try await content.pool.withConnection(deadline: context.deadline) { connection in
            try await connection.query("""
                SELECT \(unsafeSQL: GoalRecord.columns), \(unsafeSQL: key) AS sort_key
                FROM goals g
                WHERE g.user_id = \(user)
                  AND (\(status)::text IS NULL OR g.status = \(status)::text)
                  AND (\(category)::text IS NULL OR g.category = \(category)::text)
                  AND g.archived = \(request.archived)
                  AND (g.is_active OR \(request.includeHidden))
                  AND (\(after?.key)::text IS NULL
                       OR (\(unsafeSQL: key), g.id) \(unsafeSQL: direction) (\(after?.key)::text, \(after?.id)::uuid))
                ORDER BY sort_key \(unsafeSQL: order), g.id \(unsafeSQL: order)
                LIMIT \(size + 1)
                """).map { (try GoalRecord(fields: $0), try $0.require("sort_key", as: String.self)) }
        }
        var response = ListGoalsResponse()
        response.goals = try rows.prefix(size).map { try Self.goal($0.0) }
        if rows.count > size, let last = rows.prefix(size).last, let goal = response.goals.last {
            response.nextPageToken = SortKeyToken.encode(key: last.1, id: goal.id, order: orderName)
        }
        return response
    }

    public func update(request: UpdateGoalRequest, context: ServerContext) async throws -> Goal {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "goal.updated", resourceType: "goal", resourceID: request.goal.id) {
            let user = try context.actingUser()
            let given = request.goal
            let id = try Validate.uuid(given.id, field: "goal.id")
            let fields = try Validate.mask(request.updateMask, allowed: Self.fields)
            let title = try fields.contains("title") ? ContentValidate.title(given.title, field: "goal.title") : nil
            let description = try fields.contains("description") ? ContentValidate.description(given.description_p, field: "goal.description") : nil
            let category = try fields.contains("category") ? ContentValidate.category(given.category, field: "goal.category") : nil
            let priority = try fields.contains("priority") ? Self.priority(given.priority) : nil
            let target = try fields.contains("target_date") ? ContentValidate.date(given.targetDate, field: "goal.target_date") : nil
            let metadata = try fields.contains("metadata") ? ContentValidate.metadata(given.metadata, field: "goal.metadata") : nil
            return try await change(id, user: user, origin: origin, action: "goal.updated", context: context, details: fields.sorted().joined(separator: ","), """
                UPDATE goals g SET
                    title = CASE WHEN \(fields.contains("title")) THEN \(title) ELSE title END,
                    description = CASE WHEN \(fields.contains("description")) THEN \(description) ELSE description END,
                    category = CASE WHEN \(fields.contains("category")) THEN \(category) ELSE category END,
                    priority = CASE WHEN \(fields.contains("priority")) THEN \(priority)::integer ELSE priority END,
                    target_date = CASE WHEN \(fields.contains("target_date")) THEN \(target)::date ELSE target_date END,
                    metadata = CASE WHEN \(fields.contains("metadata")) THEN \(metadata)::jsonb ELSE metadata END,
                    updated_at = now()
                WHERE g.id = \(id) AND g.user_id = \(user)
                RETURNING g.id
                """)
        }
    }

    public func complete(request: GoalRequest, context: ServerContext) async throws -> CompleteGoalResponse {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "goal.completed", resourceType: "goal", resourceID: request.goalID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.goalID, field: "goal_id")
            let audit = origin.sqlArguments
            let now = content.now()
            guard let result = try await content.document("""
                SELECT passion_goal_complete(\(user), \(id), \(now), \(audit.principal), \(audit.ip)::inet, \(audit.userAgent))::text AS result
                """, deadline: context.deadline)
            else { throw RPCError(code: .internal, message: "completion returned nothing") }
            return try CompleteGoalResponse.with {
                $0.goal = try Self.goal(result.requireRecord("goal"))
                $0.reward = try ContentMessages.reward(result)
                $0.quests = ContentMessages.quests(try result.records("quests"))
            }
        }
    }

    public func abandon(request: GoalRequest, context: ServerContext) async throws -> Goal {
        try await transition(request, context: context, action: "goal.abandoned", set: "status = 'abandoned'", when: """
            CASE WHEN g.status = 'active' THEN NULL
                 WHEN g.status = 'abandoned' THEN 'same'
                 ELSE 'the goal is completed: only an active goal can be abandoned' END
            """)
    }

    public func delete(request: GoalRequest, context: ServerContext) async throws -> Goal {
        try await transition(request, context: context, action: "goal.deleted", set: "is_active = false",
                             when: "CASE WHEN g.is_active THEN NULL ELSE 'same' END", includeDeleted: true)
    }

    public func restore(request: GoalRequest, context: ServerContext) async throws -> Goal {
        try await transition(request, context: context, action: "goal.restored", set: "is_active = true",
                             when: "CASE WHEN NOT g.is_active THEN NULL ELSE 'same' END", includeDeleted: true)
    }

    public func archive(request: GoalRequest, context: ServerContext) async throws -> Goal {
        try await transition(request, context: context, action: "goal.archived", set: "archived = true",
                             when: "CASE WHEN NOT g.archived THEN NULL ELSE 'same' END")
    }

    public func unarchive(request: GoalRequest, context: ServerContext) async throws -> Goal {
        try await transition(request, context: context, action: "goal.unarchived", set: "archived = false",
                             when: "CASE WHEN g.archived THEN NULL ELSE 'same' END")
    }

    public func dashboard(request: DashboardRequest, context: ServerContext) async throws -> DashboardResponse {
        let user = try context.actingUser()
        let now = content.now()
        guard let record = try await content.record("""
            SELECT u.id AS user_id, u.display_name, t.today,
                   coalesce(p.total_xp, 0) AS total_xp, coalesce(p.total_coins, 0) AS total_coins,
                   coalesce(p.current_level, 1) AS level, coalesce(p.achievements_unlocked, 0) AS achievements_unlocked,
                   passion_xp_for_level(coalesce(p.current_level, 1) + 1) AS next_level_xp,
                   (SELECT count(*) FROM goals g
                    WHERE g.user_id = u.id AND g.status = 'active' AND g.is_active AND NOT g.archived)::integer AS active_goals,
                   h.active::integer AS active_habits, h.due::integer AS habits_due
            FROM users u
            CROSS JOIN \(HabitsService.localDay(now))
            LEFT JOIN user_progress p ON p.user_id = u.id
            CROSS JOIN LATERAL (
                SELECT count(*) AS active, count(*) FILTER (WHERE NOT \(unsafeSQL: HabitsService.doneThisPeriodOfX)) AS due
                FROM habits x WHERE x.user_id = u.id AND x.is_active AND NOT x.archived) h
            WHERE u.id = \(user) AND u.deleted_at IS NULL
            """, as: DashboardRecord.self, deadline: context.deadline)
        else { throw UsersService.notFound }
        return DashboardResponse.with {
            $0.userID = record.userID.postgresText
            $0.displayName = record.displayName ?? ""
            $0.today = record.today.description
            $0.totalXp = record.totalXP
            $0.totalCoins = record.totalCoins
            $0.level = record.level
            $0.xpToNextLevel = record.nextLevelXP - record.totalXP
            $0.achievementsUnlocked = record.achievementsUnlocked
            $0.activeGoals = record.activeGoals
            $0.activeHabits = record.activeHabits
            $0.habitsDue = record.habitsDue
        }
    }

    // MARK: - Shared

    /// A state change of one goal: `when` is NULL when it applies, 'same' when the goal is
    /// already in that state (answered as is, idempotently), or the reason it cannot apply.
    private func transition(
        _ request: GoalRequest, context: ServerContext, action: String, set: String, when: String, includeDeleted: Bool = false
    ) async throws -> Goal {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: action, resourceType: "goal", resourceID: request.goalID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.goalID, field: "goal_id")
            let verdict = try await content.pool.transaction(deadline: context.deadline) { connection -> String? in
                guard let row = try await connection.query("""
                    SELECT coalesce(\(unsafeSQL: when), 'apply') AS verdict FROM goals g
                    WHERE g.id = \(id) AND g.user_id = \(user) AND (g.is_active OR \(includeDeleted)) FOR UPDATE
                    """).first
                else { return nil }
                let verdict = try row.require("verdict", as: String.self)
                if verdict == "apply" {
                    try await connection.query("UPDATE goals g SET \(unsafeSQL: set), updated_at = now() WHERE g.id = \(id)")
                    try await connection.insertAudit(origin.record(action, resourceType: "goal", resourceID: id.postgresText))
                }
                return verdict
            }
            guard let verdict else { throw Self.notFound }
            if verdict != "apply" && verdict != "same" {
                throw RPCError(code: .failedPrecondition, message: verdict, details: ErrorDetails(reason: "GOAL_NOT_ACTIVE"))
            }
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    /// Runs an UPDATE ... RETURNING g.id of one goal with its audit row, then reads the goal.
    private func change(
        _ id: UUID, user: UUID, origin: AuditOrigin, action: String, context: ServerContext, details: String, _ sql: SQL
    ) async throws -> Goal {
        let changed = try await content.pool.transaction(deadline: context.deadline) { connection -> Bool in
            guard try await connection.query(sql).first != nil else { return false }
            try await connection.insertAudit(origin.record(action, resourceType: "goal", resourceID: id.postgresText, details: ["fields": details]))
            return true
        }
        guard changed else { throw Self.notFound }
        return try await fetch(id, user: user, deadline: context.deadline)
    }

    func fetch(_ id: UUID, user: UUID, deadline: ContinuousClock.Instant?) async throws -> Goal {
        guard let record = try await content.record("""
            SELECT \(unsafeSQL: GoalRecord.columns) FROM goals g WHERE g.id = \(id) AND g.user_id = \(user)
            """, as: GoalRecord.self, deadline: deadline)
        else { throw Self.notFound }
        return try Self.goal(record)
    }

    /// 0 means none; otherwise 1–5.
    static func priority(_ value: Int32) throws -> Int32? {
        guard value != 0 else { return nil }
        guard (1...5).contains(value) else { throw Validate.invalid("goal.priority", "must be 1–5, or 0 for none") }
        return value
    }

    static func goal(_ record: GoalRecord) throws -> Goal {
        var goal = Goal()
        goal.id = record.id.postgresText
        goal.title = record.title
        goal.description_p = record.description ?? ""
        goal.category = record.category ?? ""
        goal.status = record.status
        goal.priority = record.priority ?? 0
        goal.targetDate = record.targetDate?.description ?? ""
        goal.metadata = try ContentMessages.metadata(record.metadata)
        goal.archived = record.archived
        goal.deleted = !record.isActive
        goal.habitCount = record.habitCount
        goal.createdAt = Google_Protobuf_Timestamp(record.createdAt)
        goal.updatedAt = Google_Protobuf_Timestamp(record.updatedAt)
        if let completed = record.completedAt { goal.completedAt = Google_Protobuf_Timestamp(completed) }
        return goal
    }
}
