import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Achievements`: the catalog, each user's achievements, and administration.
public struct AchievementsService: Achievements.ServiceProtocol {
    let store: GamificationStore
    /// The catalog's reads, which may lag (a hot standby when one is configured).
    let catalogStore: GamificationStore
    let trail: AuditTrail
    /// The instant streaks are read at (the content clock, which tests move).
    let now: @Sendable () -> Date

    public init(pool: PostgresPool, reads: PostgresPool? = nil, trail: AuditTrail, now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = GamificationStore(pool: pool)
        self.catalogStore = GamificationStore(pool: reads ?? pool)
        self.trail = trail
        self.now = now
    }

    static let ruleTypes: Set<String> = [
        "habit_streak", "total_xp", "goals_completed", "level", "completions", "focus_minutes", "quests_completed", "coins_earned",
    ]
    static let categories: Set<String> = ["progress", "social", "challenge"]
    static let rarities: Set<String> = ["common", "rare", "epic", "legendary"]
    static let fields = ["slug", "title", "description", "icon_url", "category", "rarity", "xp_reward", "coins_reward", "condition"]
    static let notFound = RPCError(code: .notFound, message: "achievement not found", details: ErrorDetails(reason: "ACHIEVEMENT_NOT_FOUND"))

    public func catalog(request: CatalogRequest, context: ServerContext) async throws -> CatalogResponse {
        let records = try await catalogStore.achievements(includeRetired: request.includeRetired, deadline: context.deadline)
        return CatalogResponse.with { $0.achievements = records.map(Self.achievement) }
    }

    public func mine(request: MineRequest, context: ServerContext) async throws -> MineResponse {
        let userID = try context.actingUser()
        let standings = try await store.standings(of: userID, now: now(), deadline: context.deadline)
        return MineResponse.with { response in
            response.achievements = standings.map { standing in
                let achievement = Self.achievement(standing.achievement)
                return AchievementProgress.with {
                    $0.achievement = achievement
                    $0.target = achievement.condition.value
                    if let unlocked = standing.unlockedAt {
                        $0.unlocked = true
                        $0.unlockedAt = Google_Protobuf_Timestamp(unlocked)
                    }
                    $0.current = standing.current
                }
            }
        }
    }

    public func define(request: DefineAchievementRequest, context: ServerContext) async throws -> Achievement {
        let origin = AuditOrigin(context)
        return try await trail.failures(origin, action: "achievement.defined", resourceType: "achievement") {
            let given = request.achievement
            try Self.validate(given, fields: Set(Self.fields))
            guard let record = try await store.define(Self.draft(given), origin: origin, deadline: context.deadline) else {
                throw RPCError(code: .internal, message: "insert returned nothing")
            }
            return Self.achievement(record)
        }
    }

    public func update(request: UpdateAchievementRequest, context: ServerContext) async throws -> Achievement {
        let origin = AuditOrigin(context)
        return try await trail.failures(origin, action: "achievement.updated", resourceType: "achievement", resourceID: request.achievement.id) {
            let given = request.achievement
            let id = try Validate.uuid(given.id, field: "achievement.id")
            let fields = try Validate.mask(request.updateMask, allowed: Self.fields)
            try Self.validate(given, fields: fields)
            guard let record = try await store.update(id, fields: fields, from: Self.draft(given), origin: origin, deadline: context.deadline)
            else { throw Self.notFound }
            return Self.achievement(record)
        }
    }

    public func retire(request: RetireAchievementRequest, context: ServerContext) async throws -> Achievement {
        let origin = AuditOrigin(context)
        let id = try Validate.uuid(request.achievementID, field: "achievement_id")
        guard let record = try await store.retire(id, origin: origin, deadline: context.deadline) else { throw Self.notFound }
        return Self.achievement(record)
    }

    public func evaluate(request: EvaluateRequest, context: ServerContext) async throws -> EvaluateResponse {
        let origin = AuditOrigin(context)
        let user = try Validate.uuid(request.userID, field: "user_id")
        let record = try await store.evaluate(user, origin: origin, deadline: context.deadline)
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

    /// A definition as the store writes it; fields the call does not set are ignored there.
    static func draft(_ given: Achievement) -> GamificationStore.AchievementDraft {
        GamificationStore.AchievementDraft(
            slug: given.slug, title: given.title, description: optional(given.description_p), iconURL: optional(given.iconURL),
            category: given.category, rarity: given.rarity, xpReward: given.xpReward, coinsReward: given.coinsReward,
            condition: condition(given.condition))
    }

    static func achievement(_ record: AchievementRecord) -> Achievement {
        var achievement = Achievement()
        achievement.id = record.id.postgresText
        achievement.slug = record.slug ?? ""
        achievement.title = record.title
        achievement.description_p = record.description ?? ""
        achievement.iconURL = record.iconURL ?? ""
        achievement.category = record.category ?? ""
        achievement.rarity = record.rarity ?? ""
        achievement.xpReward = record.xpReward
        achievement.coinsReward = record.coinsReward
        achievement.condition = UnlockCondition.with {
            $0.type = record.condition?.type ?? ""
            $0.value = record.condition?.value ?? 0
        }
        achievement.retired = record.retiredAt != nil
        achievement.createdAt = Google_Protobuf_Timestamp(record.createdAt)
        return achievement
    }
}
