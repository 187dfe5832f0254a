import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Achievements`: the catalog, each user's achievements, and administration.
public struct AchievementsService: Achievements.ServiceProtocol {
    let pool: PostgresPool
    let trail: AuditTrail
    /// The instant streaks are read at (the content clock, which tests move).
    let now: @Sendable () -> Date

    public init(pool: PostgresPool, trail: AuditTrail, now: @escaping @Sendable () -> Date = { Date() }) {
        self.pool = pool
        self.trail = trail
        self.now = now
    }

    static let ruleTypes: Set<String> = [
        "habit_streak", "total_xp", "goals_completed", "level", "completions", "focus_minutes", "quests_completed", "coins_earned",
    ]
    static let categories: Set<String> = ["progress", "social", "challenge"]
    static let rarities: Set<String> = ["common", "rare", "epic", "legendary"]
    static let fields = ["slug", "title", "description", "icon_url", "category", "rarity", "xp_reward", "coins_reward", "condition"]
    static let columns = """
        id, slug, title, description, icon_url, category, rarity, xp_reward, coins_reward, unlock_condition, retired_at, created_at
        """
    static let notFound = RPCError(code: .notFound, message: "achievement not found", details: ErrorDetails(reason: "ACHIEVEMENT_NOT_FOUND"))

    public func catalog(request: CatalogRequest, context: ServerContext) async throws -> CatalogResponse {
        let rows = try await pool.withConnection(deadline: context.deadline) { connection in
            try await connection.query("""
                SELECT \(unsafeSQL: Self.columns) FROM achievements
                WHERE \(request.includeRetired) OR retired_at IS NULL
                ORDER BY category, (unlock_condition ->> 'type'), (unlock_condition ->> 'value')::bigint, id
                """)
        }
        return try CatalogResponse.with { $0.achievements = try rows.map(Self.achievement) }
    }

    public func mine(request: MineRequest, context: ServerContext) async throws -> MineResponse {
        let userID = try context.actingUser()
        let rows = try await pool.withConnection(deadline: context.deadline) { connection in
            try await connection.query("""
                SELECT a.id, a.slug, a.title, a.description, a.icon_url, a.category, a.rarity, a.xp_reward, a.coins_reward,
                       a.unlock_condition, a.retired_at, a.created_at, ua.unlocked_at,
                       coalesce((v.values ->> (a.unlock_condition ->> 'type'))::bigint, 0) AS current
                FROM achievements a
                LEFT JOIN user_achievements ua ON ua.achievement_id = a.id AND ua.user_id = \(userID)
                -- The streak shown is today's, as Habits/Today reads it; the stored one stays
                -- as it was when the streak last grew.
                CROSS JOIN (SELECT passion_rule_values(\(userID))
                                   || jsonb_build_object('habit_streak', (passion_user_streaks(\(userID), \(now()))).longest) AS values) v
                WHERE a.retired_at IS NULL OR ua.id IS NOT NULL
                ORDER BY ua.unlocked_at DESC NULLS LAST,
                         coalesce((v.values ->> (a.unlock_condition ->> 'type'))::numeric, 0)
                           / greatest((a.unlock_condition ->> 'value')::numeric, 1) DESC,
                         a.id
                """)
        }
        return try MineResponse.with { response in
            response.achievements = try rows.map { row in
                let achievement = try Self.achievement(row)
                return try AchievementProgress.with {
                    $0.achievement = achievement
                    $0.target = achievement.condition.value
                    if let unlocked = try row.decode("unlocked_at", as: Date.self) {
                        $0.unlocked = true
                        $0.unlockedAt = Google_Protobuf_Timestamp(unlocked)
                    }
                    $0.current = try row.require("current", as: Int64.self)
                }
            }
        }
    }

    public func define(request: DefineAchievementRequest, context: ServerContext) async throws -> Achievement {
        let origin = AuditOrigin(context)
        return try await trail.failures(origin, action: "achievement.defined", resourceType: "achievement") {
            let given = request.achievement
            try Self.validate(given, fields: Set(Self.fields))
            let row = try await pool.transaction(deadline: context.deadline) { connection -> Row? in
                let row = try await connection.query("""
                    INSERT INTO achievements (slug, title, description, icon_url, category, rarity, xp_reward, coins_reward, unlock_condition)
                    VALUES (\(given.slug), \(given.title), \(Self.optional(given.description_p)), \(Self.optional(given.iconURL)),
                            \(given.category), \(given.rarity), \(given.xpReward), \(given.coinsReward), \(Self.condition(given.condition))::jsonb)
                    RETURNING \(unsafeSQL: Self.columns)
                    """).first
                if let row {
                    try await connection.insertAudit(origin.record(
                        "achievement.defined", resourceType: "achievement", resourceID: try row.require("id", as: UUID.self).postgresText,
                        details: ["slug": given.slug]))
                }
                return row
            }
            guard let row else { throw RPCError(code: .internal, message: "insert returned nothing") }
            return try Self.achievement(row)
        }
    }

    public func update(request: UpdateAchievementRequest, context: ServerContext) async throws -> Achievement {
        let origin = AuditOrigin(context)
        return try await trail.failures(origin, action: "achievement.updated", resourceType: "achievement", resourceID: request.achievement.id) {
            let given = request.achievement
            let id = try Validate.uuid(given.id, field: "achievement.id")
            let fields = try Validate.mask(request.updateMask, allowed: Self.fields)
            try Self.validate(given, fields: fields)
            let row = try await pool.transaction(deadline: context.deadline) { connection -> Row? in
                let row = try await connection.query("""
                    UPDATE achievements SET
                        slug = CASE WHEN \(fields.contains("slug")) THEN \(given.slug) ELSE slug END,
                        title = CASE WHEN \(fields.contains("title")) THEN \(given.title) ELSE title END,
                        description = CASE WHEN \(fields.contains("description")) THEN \(Self.optional(given.description_p)) ELSE description END,
                        icon_url = CASE WHEN \(fields.contains("icon_url")) THEN \(Self.optional(given.iconURL)) ELSE icon_url END,
                        category = CASE WHEN \(fields.contains("category")) THEN \(given.category) ELSE category END,
                        rarity = CASE WHEN \(fields.contains("rarity")) THEN \(given.rarity) ELSE rarity END,
                        xp_reward = CASE WHEN \(fields.contains("xp_reward")) THEN \(given.xpReward) ELSE xp_reward END,
                        coins_reward = CASE WHEN \(fields.contains("coins_reward")) THEN \(given.coinsReward) ELSE coins_reward END,
                        unlock_condition = CASE WHEN \(fields.contains("condition")) THEN \(Self.condition(given.condition))::jsonb
                                                ELSE unlock_condition END
                    WHERE id = \(id)
                    RETURNING \(unsafeSQL: Self.columns)
                    """).first
                if row != nil {
                    try await connection.insertAudit(origin.record(
                        "achievement.updated", resourceType: "achievement", resourceID: id.postgresText,
                        details: ["fields": fields.sorted().joined(separator: ",")]))
                }
                return row
            }
            guard let row else { throw Self.notFound }
            return try Self.achievement(row)
        }
    }

    public func retire(request: RetireAchievementRequest, context: ServerContext) async throws -> Achievement {
        let origin = AuditOrigin(context)
        let id = try Validate.uuid(request.achievementID, field: "achievement_id")
        let row = try await pool.transaction(deadline: context.deadline) { connection -> Row? in
            let retired = try await connection.query("""
                UPDATE achievements SET retired_at = now() WHERE id = \(id) AND retired_at IS NULL RETURNING \(unsafeSQL: Self.columns)
                """).first
            if retired != nil {
                try await connection.insertAudit(origin.record("achievement.retired", resourceType: "achievement", resourceID: id.postgresText))
                return retired
            }
            return try await connection.query("SELECT \(unsafeSQL: Self.columns) FROM achievements WHERE id = \(id)").first
        }
        guard let row else { throw Self.notFound }
        return try Self.achievement(row)
    }

    public func evaluate(request: EvaluateRequest, context: ServerContext) async throws -> EvaluateResponse {
        let origin = AuditOrigin(context)
        let user = try Validate.uuid(request.userID, field: "user_id")
        let text = try await pool.withConnection(deadline: context.deadline) { connection in
            try await connection.query("""
                SELECT passion_evaluate(\(user), \(origin.principal.description), \(origin.ipAddress.map { InetAddress($0) })::inet,
                                        \(origin.userAgent))::text AS result
                """).first?.require("result", as: String.self)
        }
        guard let text else { throw RPCError(code: .internal, message: "evaluation returned nothing") }
        let record = try RewardRecord(fields: DocumentFields(text: text))
        return EvaluateResponse.with {
            $0.progress = record.progress.map(ProgressService.summary) ?? ProgressSummary()
            $0.events = record.events.map(ProgressService.event)
        }
    }

    // MARK: - Validation and rows

    static func validate(_ given: Achievement, fields: Set<String>) throws {
        if fields.contains("slug"), given.slug.range(of: #"^[a-z][a-z0-9_]{0,62}$"#, options: .regularExpression) == nil {
            throw Validate.invalid("achievement.slug", "must be lower-case letters, digits and '_', starting with a letter, at most 63")
        }
        if fields.contains("title") {
            let title = given.title.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !title.isEmpty, Validate.fits(title, 255) else { throw Validate.invalid("achievement.title", "must be 1–255 characters") }
        }
        if fields.contains("icon_url") { _ = try Validate.url(given.iconURL, field: "achievement.icon_url") }
        if fields.contains("category"), !categories.contains(given.category) {
            throw Validate.invalid("achievement.category", "must be one of \(categories.sorted().joined(separator: ", "))")
        }
        if fields.contains("rarity"), !rarities.contains(given.rarity) {
            throw Validate.invalid("achievement.rarity", "must be one of \(rarities.sorted().joined(separator: ", "))")
        }
        for (field, value) in [("xp_reward", given.xpReward), ("coins_reward", given.coinsReward)] where fields.contains(field) {
            guard (0...100_000).contains(value) else { throw Validate.invalid("achievement.\(field)", "must be 0–100000") }
        }
        if fields.contains("condition") {
            guard ruleTypes.contains(given.condition.type) else {
                throw Validate.invalid("achievement.condition.type", "must be one of \(ruleTypes.sorted().joined(separator: ", "))")
            }
            guard given.condition.value >= 1, given.condition.value <= 1_000_000_000 else {
                throw Validate.invalid("achievement.condition.value", "must be 1–1000000000")
            }
        }
    }

    static func optional(_ text: String) -> String? { text.isEmpty ? nil : text }

    static func condition(_ condition: UnlockCondition) -> JSONB {
        JSONB(json: #"{"type": "\#(condition.type)", "value": \#(condition.value)}"#)
    }

    static func achievement(_ row: Row) throws -> Achievement {
        var achievement = Achievement()
        achievement.id = try row.require("id", as: UUID.self).postgresText
        achievement.slug = try row.decode("slug", as: String.self) ?? ""
        achievement.title = try row.require("title", as: String.self)
        achievement.description_p = try row.decode("description", as: String.self) ?? ""
        achievement.iconURL = try row.decode("icon_url", as: String.self) ?? ""
        achievement.category = try row.decode("category", as: String.self) ?? ""
        achievement.rarity = try row.decode("rarity", as: String.self) ?? ""
        achievement.xpReward = try row.require("xp_reward", as: Int32.self)
        achievement.coinsReward = try row.require("coins_reward", as: Int32.self)
        let condition = try row.record("unlock_condition", as: UnlockConditionRecord.self)
        achievement.condition = UnlockCondition.with {
            $0.type = condition?.type ?? ""
            $0.value = condition?.value ?? 0
        }
        achievement.retired = try row.decode("retired_at", as: Date.self) != nil
        achievement.createdAt = Google_Protobuf_Timestamp(try row.require("created_at", as: Date.self))
        return achievement
    }
}
