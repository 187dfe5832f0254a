import Foundation

/// A user's progress as GetProgress reads it: totals, the streaks active now, and the all-time rank.
public struct ProgressStandingRecord: FieldsDecodable, Equatable {
    public var progress: ProgressRecord
    public var activeStreaks: Int32

    public init(fields: RecordSource) throws {
        progress = try ProgressRecord(fields: fields)
        activeStreaks = try fields.require("active_streaks")
    }
}

/// A `points_ledger` row.
public struct PointsLedgerRecord: FieldsDecodable, Equatable {
    public var id: Int64
    public var points: Int32
    public var reason: String
    public var resourceType: String?
    public var resourceID: UUID?
    public var idempotencyKey: String?
    public var createdAt: Date

    public static let columns = "id, points, reason, resource_type, resource_id, idempotency_key, created_at"

    public init(fields: RecordSource) throws {
        id = try fields.require("id")
        points = try fields.require("points")
        reason = try fields.require("reason")
        resourceType = try fields.optional("resource_type")
        resourceID = try fields.optional("resource_id")
        idempotencyKey = try fields.optional("idempotency_key")
        createdAt = try fields.require("created_at")
    }
}

/// A `coins_ledger` row.
public struct CoinsLedgerRecord: FieldsDecodable, Equatable {
    public var id: Int64
    public var coins: Int32
    public var transactionType: String
    public var reason: String
    public var resourceID: UUID?
    public var idempotencyKey: String?
    public var refundOf: Int64?
    public var createdAt: Date

    public static let columns = "id, coins, transaction_type, reason, resource_id, idempotency_key, refund_of, created_at"

    public init(fields: RecordSource) throws {
        id = try fields.require("id")
        coins = try fields.require("coins")
        transactionType = try fields.require("transaction_type")
        reason = try fields.require("reason")
        resourceID = try fields.optional("resource_id")
        idempotencyKey = try fields.optional("idempotency_key")
        refundOf = try fields.optional("refund_of")
        createdAt = try fields.require("created_at")
    }
}

/// An `achievements` row.
public struct AchievementRecord: FieldsDecodable, Equatable {
    public var id: UUID
    public var slug: String?
    public var title: String
    public var description: String?
    public var iconURL: String?
    public var category: String?
    public var rarity: String?
    public var xpReward: Int32
    public var coinsReward: Int32
    public var condition: UnlockConditionRecord?
    public var retiredAt: Date?
    public var createdAt: Date

    public static let columns = """
        id, slug, title, description, icon_url, category, rarity, xp_reward, coins_reward, unlock_condition, retired_at, created_at
        """

    public init(fields: RecordSource) throws {
        id = try fields.require("id")
        slug = try fields.optional("slug")
        title = try fields.require("title")
        description = try fields.optional("description")
        iconURL = try fields.optional("icon_url")
        category = try fields.optional("category")
        rarity = try fields.optional("rarity")
        xpReward = try fields.require("xp_reward")
        coinsReward = try fields.require("coins_reward")
        condition = try fields.record("unlock_condition")
        retiredAt = try fields.optional("retired_at")
        createdAt = try fields.require("created_at")
    }
}

/// An achievement with one user's standing: when it was unlocked, and the rule's value now.
public struct AchievementStandingRecord: FieldsDecodable, Equatable {
    public var achievement: AchievementRecord
    public var unlockedAt: Date?
    public var current: Int64

    public init(fields: RecordSource) throws {
        achievement = try AchievementRecord(fields: fields)
        unlockedAt = try fields.optional("unlocked_at")
        current = try fields.require("current")
    }
}

/// One difference `passion_reconcile()` found between a total and its ledger.
public struct ReconcileDifferenceRecord: FieldsDecodable, Equatable {
    public var userID: UUID
    public var check: String
    public var expected: Int64
    public var actual: Int64

    public init(fields: RecordSource) throws {
        userID = try fields.require("user_id")
        check = try fields.require("check_name")
        expected = try fields.require("expected")
        actual = try fields.require("actual")
    }
}

/// How many users stand at a level, and their average XP.
public struct LevelBucketRecord: FieldsDecodable, Equatable {
    public var level: Int32
    public var users: Int64
    public var averageXP: Int64

    public init(fields: RecordSource) throws {
        level = try fields.require("current_level")
        users = try fields.require("users")
        averageXP = try fields.require("average_xp")
    }
}

/// How many users unlocked an achievement.
public struct AchievementCountRecord: FieldsDecodable, Equatable {
    public var id: UUID
    public var slug: String?
    public var title: String
    public var unlocked: Int64

    public init(fields: RecordSource) throws {
        id = try fields.require("id")
        slug = try fields.optional("slug")
        title = try fields.require("title")
        unlocked = try fields.require("unlocked")
    }
}
