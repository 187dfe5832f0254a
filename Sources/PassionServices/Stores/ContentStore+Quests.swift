import Foundation
import PassionIdentity
import PassionRPCServer
import PassionStore

/// Quests.
extension ContentStore {
    /// A validated quest to create; `start` nil means today in the user's time zone.
    struct QuestDraft: Sendable {
        var title: String
        var description: String?
        var type: String
        var start: LocalDate?
        var end: LocalDate
        var xpReward: Int32
        var criteria: QuestRecord.Criteria
        var target: Int32
        /// "user", or "service:<id>" for a quest a service set.
        var createdBy: String
    }

    /// How a quest creation ended; every refusal is checked in the creating transaction.
    enum QuestCreation: Sendable {
        case created(UUID)
        case userNotFound
        /// The end date is before the user's today.
        case endInPast(today: LocalDate)
        /// The end date is before the start (today, when none was given).
        case endBeforeStart(start: LocalDate)
        case habitNotFound
        case goalNotFound
    }

    func createQuest(_ draft: QuestDraft, user: UUID, now: Date, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> QuestCreation {
        try await pool.transaction(deadline: deadline) { connection -> QuestCreation in
            let today = try await connection.query("""
                SELECT passion_local_date(timezone, \(now)) AS today FROM users WHERE id = \(user) AND deleted_at IS NULL
                """).first?.require("today", as: LocalDate.self)
            guard let today else { return .userNotFound }
            let from = draft.start ?? today
            guard draft.end >= today else { return .endInPast(today: today) }
            guard from <= draft.end else { return .endBeforeStart(start: from) }
            if let habit = draft.criteria.habitID,
                try await connection.query("SELECT 1 FROM habits WHERE id = \(habit) AND user_id = \(user)").isEmpty
            {
                return .habitNotFound
            }
            if let goal = draft.criteria.goalID, try await Self.ownsGoal(goal, user: user, connection) == false { return .goalNotFound }
            guard let id = try await connection.query("""
                INSERT INTO quests (user_id, title, description, quest_type, start_date, end_date, xp_reward, criteria, target, created_by)
                VALUES (\(user), \(draft.title), \(draft.description), \(draft.type), \(from), \(draft.end), \(draft.xpReward),
                        \(draft.criteria.json)::jsonb, \(draft.target), \(draft.createdBy))
                RETURNING id
                """).first?.require("id", as: UUID.self)
            else { throw RecordDecodingError(field: "id", problem: "the insert returned no row") }
            try await connection.insertAudit(origin.record(
                "quest.created", resourceType: "quest", resourceID: id.postgresText, details: ["quest_type": draft.type]))
            return .created(id)
        }
    }

    func quest(_ id: UUID, user: UUID, now: Date, deadline: ContinuousClock.Instant?) async throws -> QuestRecord? {
        try await pool.record("""
            SELECT \(unsafeSQL: QuestRecord.columns) FROM quests q, \(Self.today(user, now))
            WHERE q.id = \(id) AND q.user_id = \(user)
            """, as: QuestRecord.self, deadline: deadline)
    }

    /// Up to `limit` quests of `user`, newest first, after the keyset position `after`; `status`
    /// as a reader sees it (an active quest past its end has failed).
    func quests(
        of user: UUID, status: String?, after: (key: String, id: UUID)?, limit: Int, now: Date, deadline: ContinuousClock.Instant?
    ) async throws -> [(quest: QuestRecord, sortKey: String)] {
        let key = "to_char(q.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
        return try await pool.withConnection(deadline: deadline) { connection in
            try await connection.query("""
                SELECT \(unsafeSQL: QuestRecord.columns), \(unsafeSQL: key) AS sort_key
                FROM quests q, \(Self.today(user, now))
                WHERE q.user_id = \(user)
                  AND (\(status)::text IS NULL
                       OR (CASE WHEN q.status = 'active' AND q.end_date < t.today THEN 'failed' ELSE q.status END) = \(status)::text)
                  AND (\(after?.key)::text IS NULL OR (\(unsafeSQL: key), q.id) < (\(after?.key)::text, \(after?.id)::uuid))
                ORDER BY sort_key DESC, q.id DESC
                LIMIT \(limit)
                """).map { (try QuestRecord(fields: $0), try $0.require("sort_key", as: String.self)) }
        }
    }

    /// One call of passion_quest_complete (0012_reward_integrity.sql).
    func completeQuest(_ id: UUID, user: UUID, now: Date, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> QuestCompletionRecord {
        let audit = origin.sqlArguments
        return try await pool.result("""
            SELECT passion_quest_complete(\(user), \(id), \(now), \(audit.principal), \(audit.ip)::inet,
                                          \(audit.userAgent))::text AS result
            """, as: QuestCompletionRecord.self, deadline: deadline)
    }

    /// Abandons an active quest under a row lock, audited; returns the status it had as a reader
    /// sees it (a quest past its end date has failed, whether or not the daily job has said
    /// so), nil when the user has no such quest.
    func abandonQuest(_ id: UUID, user: UUID, now: Date, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> String? {
        try await pool.transaction(deadline: deadline) { connection -> String? in
            guard let status = try await connection.query("""
                SELECT CASE WHEN q.status = 'active' AND q.end_date < t.today THEN 'failed' ELSE q.status END AS status
                FROM quests q, \(Self.today(user, now))
                WHERE q.id = \(id) AND q.user_id = \(user) FOR UPDATE OF q
                """).first?.require("status", as: String.self)
            else { return nil }
            if status == "active" {
                try await connection.query("UPDATE quests SET status = 'abandoned', updated_at = now() WHERE id = \(id)")
                try await connection.insertAudit(origin.record("quest.abandoned", resourceType: "quest", resourceID: id.postgresText))
            }
            return status
        }
    }
}
