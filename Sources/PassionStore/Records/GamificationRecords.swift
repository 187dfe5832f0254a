import Foundation
import PassionJSON

/// A user's progress as `passion_progress_json` (0007_gamification_engine.sql) and the reads
/// that select `user_progress` with the level bounds give it.
public struct ProgressRecord: FieldsDecodable, Equatable {
    public var userID: UUID
    public var totalXP: Int64
    public var level: Int32
    /// The XP at which the current level began.
    public var levelFloorXP: Int64
    /// The XP at which the next level begins.
    public var nextLevelXP: Int64
    public var totalCoins: Int64
    public var coinsEarned: Int64
    public var achievementsUnlocked: Int32

    public init(fields: RecordSource) throws {
        userID = try fields.require("user_id")
        totalXP = try fields.require("total_xp")
        level = try fields.require("level")
        levelFloorXP = try fields.require("level_floor_xp")
        nextLevelXP = try fields.require("next_level_xp")
        totalCoins = try fields.require("total_coins")
        coinsEarned = try fields.require("coins_earned")
        achievementsUnlocked = try fields.require("achievements_unlocked")
    }

    /// Selects the columns of a `ProgressRecord` for user `userColumn` (a uuid expression).
    public static func columns(user userColumn: String) -> String {
        """
        \(userColumn) AS user_id, coalesce(p.total_xp, 0) AS total_xp, coalesce(p.current_level, 1) AS level,
        passion_xp_for_level(coalesce(p.current_level, 1)) AS level_floor_xp,
        passion_xp_for_level(coalesce(p.current_level, 1) + 1) AS next_level_xp,
        coalesce(p.total_coins, 0) AS total_coins, coalesce(p.coins_earned, 0) AS coins_earned,
        coalesce(p.achievements_unlocked, 0) AS achievements_unlocked
        """
    }
}

/// One row of `progress_events`, as stored, as `passion_emit_event` returns it and as its
/// NOTIFY payload carries it.
public struct EventRecord: FieldsDecodable, Equatable {
    public var id: Int64
    public var userID: UUID
    /// One of `Vocabulary.eventTypes`; an unknown type is read as is, for the caller to map.
    public var type: String
    public var createdAt: Date
    public var payload: Payload

    /// The payload members of every event type; each type sets its own.
    public struct Payload: FieldsDecodable, Equatable {
        public var ledgerID: Int64?
        public var amount: Int64?
        public var reason: String?
        public var fromLevel: Int32?
        public var toLevel: Int32?
        public var achievementID: UUID?
        public var slug: String?
        public var title: String?
        public var rarity: String?
        public var xpReward: Int32?
        public var coinsReward: Int32?

        public init(fields: RecordSource) throws {
            ledgerID = try fields.optional("ledger_id")
            amount = try fields.optional("amount")
            reason = try fields.optional("reason")
            fromLevel = try fields.optional("from_level")
            toLevel = try fields.optional("to_level")
            achievementID = try fields.optional("achievement_id")
            slug = try fields.optional("slug")
            title = try fields.optional("title")
            rarity = try fields.optional("rarity")
            xpReward = try fields.optional("xp_reward")
            coinsReward = try fields.optional("coins_reward")
        }
    }

    /// The columns of `progress_events` an `EventRecord` reads.
    public static let columns = "id, user_id, type, payload, created_at"

    public init(fields: RecordSource) throws {
        id = try fields.require("id")
        userID = try fields.require("user_id")
        type = try fields.require("type")
        createdAt = try fields.require("created_at")
        payload = try fields.record("payload") ?? Payload(fields: try DocumentFields(.object([:])))
    }

    /// A NOTIFY payload on channel `passion_progress`.
    public init(notification payload: String) throws {
        try self.init(fields: DocumentFields(text: payload, field: "notification"))
    }
}

/// What a reward, an evaluation or a content function's reward part returns: the progress
/// after it, the ledger row it wrote, and the events it emitted.
public struct RewardRecord: FieldsDecodable, Equatable {
    /// Nil for the replay of a content call that paid nothing (past a daily cap): its stored
    /// reward was null, and the replay says only that it was replayed.
    public var progress: ProgressRecord?
    /// The ledger row written; nil for an evaluation, which writes none.
    public var ledgerID: Int64?
    /// True when a retry was answered from the idempotency key.
    public var replayed: Bool
    public var events: [EventRecord]

    public init(fields: RecordSource) throws {
        progress = try fields.optional("user_id", as: UUID.self) == nil ? nil : ProgressRecord(fields: fields)
        ledgerID = try fields.optional("ledger_id")
        replayed = try fields.optional("replayed") ?? false
        events = try fields.records("events")
    }
}

/// One item's outcome in `passion_reward_batch`'s result: its reward, or the error that undid
/// that item alone.
public enum BatchOutcome: Sendable {
    case rewarded(RewardRecord)
    case failed(StoreError)

    /// The function's whole result: a JSON array, one outcome per item in order.
    public static func outcomes(document text: String) throws -> [BatchOutcome] {
        let value: StrictJSON
        do {
            value = try StrictJSON.parse(text.utf8)
        } catch {
            throw RecordDecodingError(field: "results", problem: "is not JSON: \(error)")
        }
        guard case .array(let items) = value else { throw RecordDecodingError(field: "results", problem: "is not a JSON array") }
        return try items.enumerated().map { index, item in
            let fields = try DocumentFields(item, field: "results[\(index)]")
            guard let failure = try fields.nested("error") else { return .rewarded(try RewardRecord(fields: fields)) }
            var error = StoreError(
                sqlState: try failure.optional("sqlstate") ?? "XX000", serverMessage: try failure.optional("message") ?? "",
                constraint: try failure.optional("constraint"))
            error.hint = try failure.optional("hint")
            error.detail = try failure.optional("detail")
            return .failed(error)
        }
    }
}

/// An achievement's `unlock_condition`: the rule value (`passion_rule_values`) to reach.
public struct UnlockConditionRecord: FieldsDecodable, Equatable {
    public var type: String
    public var value: Int64

    public init(fields: RecordSource) throws {
        type = try fields.require("type")
        value = try fields.require("value")
    }
}
