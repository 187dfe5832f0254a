/// The closed sets of words the schema's CHECK constraints and functions enforce, named once
/// for Swift. `VocabularyTests` holds each to the migrated database's own definition, so a
/// migration that changes one fails a test instead of a caller.
public enum Vocabulary {
    /// XP reasons a caller may give (`points_ledger_reason_valid`, less what only the functions write).
    public static let xpReasons: Set<String> = [
        "habit_completed", "goal_completed", "focus_session_completed", "quest_completed", "grant", "penalty", "correction",
    ]

    /// Coin reasons a caller may give (`coins_ledger_reason_valid`, less what only the functions write).
    public static let coinReasons: Set<String> = [
        "habit_completed", "goal_completed", "focus_session_completed", "quest_completed", "battle_win", "grant", "correction",
    ]

    /// Reasons only the SQL functions write: achievement rewards, and shop spends and refunds
    /// (which callers ask for by kind, not by reason).
    public static let functionXPReasons: Set<String> = ["achievement_unlocked"]
    public static let functionCoinReasons: Set<String> = ["achievement_unlocked", "shop_purchase"]

    /// What a reward may name as its cause (`points_ledger_resource_type_valid`, less
    /// `achievement`, which only achievement rewards name).
    public static let rewardResourceTypes: Set<String> = ["habit", "goal", "quest", "focus_session"]

    /// The event types the functions emit (`progress_events_type_valid`).
    public static let eventTypes: Set<String> = [
        "xp_awarded", "coins_awarded", "coins_spent", "coins_refunded", "level_up", "level_down", "achievement_unlocked",
    ]
}
