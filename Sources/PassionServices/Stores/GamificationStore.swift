import Foundation
import PassionIdentity
import PassionJSON
import PassionRPCServer
import PassionStore

/// The gamification domain's SQL: progress, ledgers, events, rewards, leaderboards and
/// achievements. Every statement of Progress, ProgressAdmin and Achievements is here, and each
/// answers typed records; the services validate and map records to messages.
struct GamificationStore: Sendable {
    let pool: PostgresPool

    // MARK: - Progress

    /// Totals and active streaks at `now`; nil for an unknown or deleted user.
    func standing(of user: UUID, now: Date, deadline: ContinuousClock.Instant?) async throws -> ProgressStandingRecord? {
        try await pool.record(Self.standingStatement.bind(user, now), as: ProgressStandingRecord.self, deadline: deadline)
    }

    /// `standing`'s statement: the user is `$1`, the instant `$2`.
    static let standingStatement = SQLTemplate(parameters: 2) { p in
        """
        SELECT \(unsafeSQL: ProgressRecord.columns(user: "u.id")),
               (passion_user_streaks(u.id, \(p[1]))).active_streaks AS active_streaks
        FROM users u LEFT JOIN user_progress p ON p.user_id = u.id
        WHERE u.id = \(p[0]) AND u.deleted_at IS NULL
        """
    }

    /// The newest `limit` XP ledger rows of `user` with ids below `before` (all when nil).
    func pointsLedger(of user: UUID, before: Int64?, limit: Int, deadline: ContinuousClock.Instant?) async throws -> [PointsLedgerRecord] {
        try await pool.records("""
            SELECT \(unsafeSQL: PointsLedgerRecord.columns) FROM points_ledger
            WHERE user_id = \(user) AND (\(before)::bigint IS NULL OR id < \(before)::bigint)
            ORDER BY id DESC LIMIT \(limit)
            """, as: PointsLedgerRecord.self, deadline: deadline)
    }

    /// The newest `limit` coin ledger rows of `user` with ids below `before` (all when nil).
    func coinsLedger(of user: UUID, before: Int64?, limit: Int, deadline: ContinuousClock.Instant?) async throws -> [CoinsLedgerRecord] {
        try await pool.records("""
            SELECT \(unsafeSQL: CoinsLedgerRecord.columns) FROM coins_ledger
            WHERE user_id = \(user) AND (\(before)::bigint IS NULL OR id < \(before)::bigint)
            ORDER BY id DESC LIMIT \(limit)
            """, as: CoinsLedgerRecord.self, deadline: deadline)
    }

    // MARK: - Events

    /// The newest event id of `user` (of everyone when nil); 0 when there is none.
    func newestEventID(of user: UUID?, deadline: ContinuousClock.Instant?) async throws -> Int64 {
        // Two statements, so each is one step down an index (user_id, id) or the primary key.
        let row = try await pool.withConnection(deadline: deadline) { connection in
            if let user {
                try await connection.query("SELECT coalesce(max(id), 0) AS newest FROM progress_events WHERE user_id = \(user)").first
            } else {
                try await connection.query("SELECT coalesce(max(id), 0) AS newest FROM progress_events").first
            }
        }
        return try row?.optional("newest", as: Int64.self) ?? 0
    }

    /// Whether event `id` is still kept (younger than `window`, an interval such as "24 hours"),
    /// and the newest event id.
    func resumePoint(_ id: Int64, window: String, deadline: ContinuousClock.Instant?) async throws -> (kept: Bool, newest: Int64) {
        let row = try await pool.withConnection(deadline: deadline) { connection in
            try await connection.query("""
                SELECT EXISTS (SELECT 1 FROM progress_events WHERE id = \(id) AND created_at > now() - \(window)::interval) AS kept,
                       (SELECT coalesce(max(id), 0) FROM progress_events) AS newest
                """).first
        }
        return (try row?.optional("kept", as: Bool.self) ?? false, try row?.optional("newest", as: Int64.self) ?? 0)
    }

    /// Up to `limit` stored events after `after`, oldest first, of `user` (everyone's when nil).
    func events(after: Int64, of user: UUID?, limit: Int) async throws -> [EventRecord] {
        try await pool.records("""
            SELECT \(unsafeSQL: EventRecord.columns) FROM progress_events
            WHERE id > \(after) AND (\(user)::uuid IS NULL OR user_id = \(user)::uuid)
            ORDER BY id LIMIT \(limit)
            """, as: EventRecord.self, deadline: nil)
    }

    // MARK: - Rewards

    /// One round trip: passion_reward does the rest in the database. Retried after a deadlock
    /// (a batch racing with the same key, see 0009), which undid it entirely.
    func reward(_ reward: ProgressService.Reward, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> RewardRecord {
        let text = try await pool.statement(deadline: deadline) { connection in
            try await connection.query("""
                SELECT passion_reward(\(reward.user), \(reward.kind), \(reward.amount), \(reward.reason), \(reward.resourceType),
                                      \(reward.resourceID), \(reward.key), \(reward.refundOf), \(origin.principal.description),
                                      \(origin.ipAddress.map { InetAddress($0) })::inet, \(origin.userAgent))::text AS result
                """).first?.require("result", as: String.self)
        }
        guard let text else { throw RecordDecodingError(field: "result", problem: "passion_reward returned no row") }
        return try RewardRecord(fields: DocumentFields(text: text))
    }

    /// Every item in one call of passion_reward_batch; one outcome per item, in order. A
    /// transaction, so that the rare deadlock with a call racing on the same key is retried.
    func rewardBatch(_ items: [ProgressService.Reward], origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> [BatchOutcome] {
        let json = Self.batchJSON(items)
        let text = try await pool.transaction(deadline: deadline) { connection in
            try await connection.query("""
                SELECT passion_reward_batch(\(JSONB(json: json))::jsonb, \(origin.principal.description),
                                            \(origin.ipAddress.map { InetAddress($0) })::inet, \(origin.userAgent))::text AS results
                """).first?.require("results", as: String.self)
        }
        guard let text else { throw RecordDecodingError(field: "results", problem: "passion_reward_batch returned no row") }
        let outcomes = try BatchOutcome.outcomes(document: text)
        guard outcomes.count == items.count else {
            throw RecordDecodingError(field: "results", problem: "\(outcomes.count) outcomes for \(items.count) items")
        }
        return outcomes
    }

    /// The items as passion_reward_batch reads them. Written by hand: JSONSerialization spent
    /// more CPU on a 100-award batch than the rest of the server's work on it.
    static func batchJSON(_ items: [ProgressService.Reward]) -> String {
        var json = "["
        json.reserveCapacity(items.count * 160)
        for (index, item) in items.enumerated() {
            if index > 0 { json += "," }
            json += #"{"user_id":""# + item.user.postgresText + #"","kind":"# + JSONText.quoted(item.kind)
            json += #","amount":"# + String(item.amount) + #","reason":"# + JSONText.quoted(item.reason)
            json += #","key":"# + JSONText.quoted(item.key)
            if let type = item.resourceType { json += #","resource_type":"# + JSONText.quoted(type) }
            if let id = item.resourceID { json += #","resource_id":""# + id.postgresText + "\"" }
            json += "}"
        }
        return json + "]"
    }

    /// Evaluates every achievement rule for `user` in one call of passion_evaluate.
    func evaluate(_ user: UUID, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> RewardRecord {
        try await pool.result("""
            SELECT passion_evaluate(\(user), \(origin.principal.description), \(origin.ipAddress.map { InetAddress($0) })::inet,
                                    \(origin.userAgent))::text AS result
            """, as: RewardRecord.self, deadline: deadline)
    }

    // MARK: - Achievements

    /// An achievement definition as stored: `nil` fields are NULL.
    struct AchievementDraft: Sendable {
        var slug: String
        var title: String
        var description: String?
        var iconURL: String?
        var category: String
        var rarity: String
        var xpReward: Int32
        var coinsReward: Int32
        var condition: JSONB
    }

    /// The catalog, retired achievements only when asked for.
    func achievements(includeRetired: Bool, deadline: ContinuousClock.Instant?) async throws -> [AchievementRecord] {
        try await pool.records("""
            SELECT \(unsafeSQL: AchievementRecord.columns) FROM achievements
            WHERE \(includeRetired) OR retired_at IS NULL
            ORDER BY category, (unlock_condition ->> 'type'), (unlock_condition ->> 'value')::bigint, id
            """, as: AchievementRecord.self, deadline: deadline)
    }

    /// Every achievement `user` has or can still earn, with the rule's value now: unlocked
    /// first (newest first), then the nearest to unlocking.
    func standings(of user: UUID, now: Date, deadline: ContinuousClock.Instant?) async throws -> [AchievementStandingRecord] {
        try await pool.records("""
            SELECT a.id, a.slug, a.title, a.description, a.icon_url, a.category, a.rarity, a.xp_reward, a.coins_reward,
                   a.unlock_condition, a.retired_at, a.created_at, ua.unlocked_at,
                   coalesce((v.values ->> (a.unlock_condition ->> 'type'))::bigint, 0) AS current
            FROM achievements a
            LEFT JOIN user_achievements ua ON ua.achievement_id = a.id AND ua.user_id = \(user)
            -- The streak shown is today's, as Habits/Today reads it; the stored one stays
            -- as it was when the streak last grew.
            CROSS JOIN (SELECT passion_rule_values(\(user))
                               || jsonb_build_object('habit_streak', (passion_user_streaks(\(user), \(now))).longest) AS values) v
            WHERE a.retired_at IS NULL OR ua.id IS NOT NULL
            ORDER BY ua.unlocked_at DESC NULLS LAST,
                     coalesce((v.values ->> (a.unlock_condition ->> 'type'))::numeric, 0)
                       / greatest((a.unlock_condition ->> 'value')::numeric, 1) DESC,
                     a.id
            """, as: AchievementStandingRecord.self, deadline: deadline)
    }

    func achievement(_ id: UUID, deadline: ContinuousClock.Instant?) async throws -> AchievementRecord? {
        try await pool.record(
            "SELECT \(unsafeSQL: AchievementRecord.columns) FROM achievements WHERE id = \(id)", as: AchievementRecord.self, deadline: deadline)
    }

    /// Inserts a definition with its audit row.
    func define(_ draft: AchievementDraft, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> AchievementRecord? {
        try await pool.transaction(deadline: deadline) { connection -> AchievementRecord? in
            guard let row = try await connection.query("""
                INSERT INTO achievements (slug, title, description, icon_url, category, rarity, xp_reward, coins_reward, unlock_condition)
                VALUES (\(draft.slug), \(draft.title), \(draft.description), \(draft.iconURL), \(draft.category), \(draft.rarity),
                        \(draft.xpReward), \(draft.coinsReward), \(draft.condition)::jsonb)
                RETURNING \(unsafeSQL: AchievementRecord.columns)
                """).first
            else { return nil }
            let record = try AchievementRecord(fields: row)
            try await connection.insertAudit(origin.record(
                "achievement.defined", resourceType: "achievement", resourceID: record.id.postgresText, details: ["slug": draft.slug]))
            return record
        }
    }

    /// Sets the `fields` of achievement `id` from `draft`, with its audit row; nil when there is no such achievement.
    func update(
        _ id: UUID, fields: Set<String>, from draft: AchievementDraft, origin: AuditOrigin, deadline: ContinuousClock.Instant?
    ) async throws -> AchievementRecord? {
        try await pool.transaction(deadline: deadline) { connection -> AchievementRecord? in
            guard let row = try await connection.query("""
                UPDATE achievements SET
                    slug = CASE WHEN \(fields.contains("slug")) THEN \(draft.slug) ELSE slug END,
                    title = CASE WHEN \(fields.contains("title")) THEN \(draft.title) ELSE title END,
                    description = CASE WHEN \(fields.contains("description")) THEN \(draft.description) ELSE description END,
                    icon_url = CASE WHEN \(fields.contains("icon_url")) THEN \(draft.iconURL) ELSE icon_url END,
                    category = CASE WHEN \(fields.contains("category")) THEN \(draft.category) ELSE category END,
                    rarity = CASE WHEN \(fields.contains("rarity")) THEN \(draft.rarity) ELSE rarity END,
                    xp_reward = CASE WHEN \(fields.contains("xp_reward")) THEN \(draft.xpReward) ELSE xp_reward END,
                    coins_reward = CASE WHEN \(fields.contains("coins_reward")) THEN \(draft.coinsReward) ELSE coins_reward END,
                    unlock_condition = CASE WHEN \(fields.contains("condition")) THEN \(draft.condition)::jsonb ELSE unlock_condition END
                WHERE id = \(id)
                RETURNING \(unsafeSQL: AchievementRecord.columns)
                """).first
            else { return nil }
            try await connection.insertAudit(origin.record(
                "achievement.updated", resourceType: "achievement", resourceID: id.postgresText,
                details: ["fields": fields.sorted().joined(separator: ",")]))
            return try AchievementRecord(fields: row)
        }
    }

    /// Retires achievement `id` (audited once); an already retired one is answered as it is.
    func retire(_ id: UUID, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> AchievementRecord? {
        try await pool.transaction(deadline: deadline) { connection -> AchievementRecord? in
            if let retired = try await connection.query("""
                UPDATE achievements SET retired_at = now() WHERE id = \(id) AND retired_at IS NULL
                RETURNING \(unsafeSQL: AchievementRecord.columns)
                """).first
            {
                try await connection.insertAudit(origin.record("achievement.retired", resourceType: "achievement", resourceID: id.postgresText))
                return try AchievementRecord(fields: retired)
            }
            return try await connection.query("SELECT \(unsafeSQL: AchievementRecord.columns) FROM achievements WHERE id = \(id)")
                .first.map { try AchievementRecord(fields: $0) }
        }
    }

    // MARK: - Administration

    /// Every difference between a total and its ledger, and how many users were checked.
    func reconcile(deadline: ContinuousClock.Instant?) async throws -> (differences: [ReconcileDifferenceRecord], usersChecked: Int64) {
        try await pool.withConnection(deadline: deadline) { connection in
            let differences = try await connection.query("SELECT * FROM passion_reconcile() ORDER BY user_id, check_name")
                .map { try ReconcileDifferenceRecord(fields: $0) }
            let users = try await connection.query("SELECT count(*) AS n FROM user_progress").first?.optional("n", as: Int64.self) ?? 0
            return (differences, users)
        }
    }

    /// Users per level, and the ten most unlocked achievements.
    func stats(deadline: ContinuousClock.Instant?) async throws -> (levels: [LevelBucketRecord], mostUnlocked: [AchievementCountRecord]) {
        try await pool.withConnection(deadline: deadline) { connection in
            let levels = try await connection.query("""
                SELECT current_level, count(*) AS users, round(avg(total_xp))::bigint AS average_xp
                FROM user_progress GROUP BY current_level ORDER BY current_level
                """).map { try LevelBucketRecord(fields: $0) }
            let common = try await connection.query("""
                SELECT a.id, a.slug, a.title, count(ua.id) AS unlocked
                FROM achievements a LEFT JOIN user_achievements ua ON ua.achievement_id = a.id
                GROUP BY a.id ORDER BY unlocked DESC, a.id LIMIT 10
                """).map { try AchievementCountRecord(fields: $0) }
            return (levels, common)
        }
    }
}
