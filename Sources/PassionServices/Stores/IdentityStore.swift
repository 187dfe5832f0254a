import Foundation
import PassionIdentity
import PassionStore

/// The identity domain's SQL: users, sign-in and sessions, settings and the audit trail. Every
/// statement of Auth, Users, Settings and Audit is here, and each answers typed records; the
/// services validate and map records to messages. Sign-in and sessions are in
/// IdentityStore+Sessions.swift.
///
/// Rows a transaction returns are decoded after it commits wherever the services did so before:
/// a row that fails to decode must not undo the change it reports.
struct IdentityStore: Sendable {
    let pool: PostgresPool

    /// A refusal found inside a transaction: thrown there, so that the transaction rolls back
    /// as it did when the services threw their own errors in it. The services answer each.
    enum Refusal: Error, Equatable {
        /// The verified address of a signing-in identity belongs to an account that signs in
        /// with another identity.
        case emailLinkedToOtherIdentity
        /// A first sign-in's user insert returned no row.
        case userNotInserted
        /// A restored account's address now belongs to another active account.
        case emailInUse
    }

    // MARK: - Users

    /// The user `id`, nil when unknown or deleted.
    func activeUser(_ id: UUID, deadline: ContinuousClock.Instant?) async throws -> UserRecord? {
        try await pool.record(
            "SELECT \(unsafeSQL: UserRecord.columns) FROM users WHERE id = \(id) AND deleted_at IS NULL", as: UserRecord.self, deadline: deadline)
    }

    /// The user `id`, deleted or not; nil when unknown.
    func user(_ id: UUID, deadline: ContinuousClock.Instant?) async throws -> UserRecord? {
        try await pool.record("SELECT \(unsafeSQL: UserRecord.columns) FROM users WHERE id = \(id)", as: UserRecord.self, deadline: deadline)
    }

    /// Sets the `fields` ("display_name", "time_zone") of active user `id`, with its audit row;
    /// nil when there is no such user.
    func updateProfile(
        _ id: UUID, fields: Set<String>, displayName: String?, timeZone: String?, origin: AuditOrigin, deadline: ContinuousClock.Instant?
    ) async throws -> UserRecord? {
        let row = try await pool.transaction(deadline: deadline) { connection -> Row? in
            let row = try await connection.query("""
                UPDATE users SET
                    display_name = CASE WHEN \(fields.contains("display_name")) THEN \(displayName) ELSE display_name END,
                    timezone = CASE WHEN \(fields.contains("time_zone")) THEN \(timeZone) ELSE timezone END,
                    updated_at = now()
                WHERE id = \(id) AND deleted_at IS NULL
                RETURNING \(unsafeSQL: UserRecord.columns)
                """).first
            if row != nil {
                try await connection.insertAudit(origin.record(
                    "user.updated", resourceType: "user", resourceID: id.postgresText,
                    details: ["fields": fields.sorted().joined(separator: ",")]))
            }
            return row
        }
        return try row.map { try UserRecord(fields: $0) }
    }

    /// Soft-deletes active user `id`, with its audit row; answers how many live sessions went
    /// with it, nil when there is no such user.
    func deleteAccount(_ id: UUID, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> Int? {
        try await pool.transaction(deadline: deadline) { connection -> Int? in
            let sessions = try await connection.query("""
                SELECT count(*) AS n FROM sessions WHERE user_id = \(id) AND revoked_at IS NULL AND expires_at > now()
                """).first?.require("n", as: Int.self) ?? 0
            // The users_soft_delete_sessions trigger deletes the sessions in this transaction.
            let updated = try await connection.query("""
                UPDATE users SET is_active = false, deleted_at = now(), updated_at = now()
                WHERE id = \(id) AND deleted_at IS NULL
                """).affected
            guard updated == 1 else { return nil }
            try await connection.insertAudit(origin.record(
                "user.deleted", resourceType: "user", resourceID: id.postgresText,
                details: ["sessions_revoked": "\(sessions)"]))
            return sessions
        }
    }

    /// Up to `limit` users whose email matches the LIKE `emailPattern`, in (created_at, id)
    /// order after the position (`afterMicros`, `afterID`) when given; deleted ones only when asked for.
    func users(
        includeDeleted: Bool, emailPattern: String, afterMicros: Int64?, afterID: UUID?, limit: Int, deadline: ContinuousClock.Instant?
    ) async throws -> [ListedUserRecord] {
        try await pool.records("""
            SELECT \(unsafeSQL: UserRecord.columns), (extract(epoch FROM created_at) * 1000000)::bigint AS cursor_us
            FROM users
            WHERE (\(includeDeleted) OR deleted_at IS NULL) AND email LIKE \(emailPattern)
              AND (\(afterMicros)::bigint IS NULL
                   OR (created_at, id) > (timestamptz 'epoch' + \(afterMicros)::bigint * interval '1 microsecond', \(afterID)::uuid))
            ORDER BY created_at, id
            LIMIT \(limit)
            """, as: ListedUserRecord.self, deadline: deadline)
    }

    /// Restores deleted user `id` (audited once); one that is not deleted is answered as it is,
    /// nil when there is no such user. Throws `Refusal.emailInUse` when another active account
    /// took the address meanwhile.
    func restore(_ id: UUID, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> UserRecord? {
        let row = try await pool.transaction(deadline: deadline) { connection -> Row? in
            do {
                let restored = try await connection.query("""
                    UPDATE users SET is_active = true, deleted_at = NULL, updated_at = now()
                    WHERE id = \(id) AND deleted_at IS NOT NULL
                    RETURNING \(unsafeSQL: UserRecord.columns)
                    """).first
                if let restored {
                    try await connection.insertAudit(origin.record(
                        "user.restored", resourceType: "user", resourceID: id.postgresText, userID: id))
                    return restored
                }
            } catch let error as StoreError where error.sqlState == "23505" {
                throw Refusal.emailInUse
            }
            // Not deleted (restoring twice is a no-op) or no such user.
            return try await connection.query("SELECT \(unsafeSQL: UserRecord.columns) FROM users WHERE id = \(id)").first
        }
        return try row.map { try UserRecord(fields: $0) }
    }

    // MARK: - Settings

    /// Settings as an update writes them; only the fields named in its mask are stored.
    struct SettingsDraft: Sendable {
        var theme: String
        var notificationsEnabled: Bool
        var emailDigestEnabled: Bool
        var emailDigestFrequency: String
        var onboardingCompleted: Bool
        var language: String
        var pomodoroMinutes: Int32
        /// JSON text; nil leaves the stored metadata as it is.
        var metadata: String?
    }

    /// The settings of active user `user`, stored with defaults first when they have none;
    /// nil when there is no such user.
    func settings(of user: UUID, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> SettingsRecord? {
        let row = try await pool.transaction(deadline: deadline) { connection -> Row? in
            guard try await Self.ensureDefaults(user, origin: origin, connection: connection) else { return nil }
            return try await connection.query("SELECT * FROM user_settings WHERE user_id = \(user)").first
        }
        return try row.map { try SettingsRecord(fields: $0) }
    }

    /// Sets the `fields` of `user`'s settings from `draft` (stored with defaults first when they
    /// have none), with its audit row; nil when there is no such user.
    func updateSettings(
        of user: UUID, fields: Set<String>, from draft: SettingsDraft, origin: AuditOrigin, deadline: ContinuousClock.Instant?
    ) async throws -> SettingsRecord? {
        let row = try await pool.transaction(deadline: deadline) { connection -> Row? in
            guard try await Self.ensureDefaults(user, origin: origin, connection: connection) else { return nil }
            let row = try await connection.query("""
                UPDATE user_settings SET
                    theme = CASE WHEN \(fields.contains("theme")) THEN \(draft.theme) ELSE theme END,
                    notifications_enabled = CASE WHEN \(fields.contains("notifications_enabled"))
                        THEN \(draft.notificationsEnabled) ELSE notifications_enabled END,
                    email_digest_enabled = CASE WHEN \(fields.contains("email_digest_enabled"))
                        THEN \(draft.emailDigestEnabled) ELSE email_digest_enabled END,
                    email_digest_frequency = CASE WHEN \(fields.contains("email_digest_frequency"))
                        THEN \(draft.emailDigestFrequency) ELSE email_digest_frequency END,
                    onboarding_completed = CASE WHEN \(fields.contains("onboarding_completed"))
                        THEN \(draft.onboardingCompleted) ELSE onboarding_completed END,
                    language = CASE WHEN \(fields.contains("language")) THEN \(draft.language) ELSE language END,
                    pomodoro_minutes = CASE WHEN \(fields.contains("pomodoro_minutes"))
                        THEN \(draft.pomodoroMinutes) ELSE pomodoro_minutes END,
                    metadata = CASE WHEN \(draft.metadata != nil) THEN \(draft.metadata.map(JSONB.init(json:)))::jsonb ELSE metadata END,
                    updated_at = now()
                WHERE user_id = \(user)
                RETURNING *
                """).first
            try await connection.insertAudit(origin.record(
                "settings.updated", resourceType: "user_settings", resourceID: user.postgresText,
                details: ["fields": fields.sorted().joined(separator: ",")]))
            return row
        }
        return try row.map { try SettingsRecord(fields: $0) }
    }

    /// Stores the defaults for an active user that has no settings yet (audited as created).
    /// False when there is no such active user. Nothing was written then, so the caller stops and
    /// commits, which is as good as the rollback of the error the services used to throw here.
    private static func ensureDefaults(_ user: UUID, origin: AuditOrigin, connection: PostgresConnection) async throws -> Bool {
        let created = try await connection.query("""
            INSERT INTO user_settings (user_id)
            SELECT id FROM users WHERE id = \(user) AND deleted_at IS NULL
            ON CONFLICT (user_id) DO NOTHING
            RETURNING id
            """)
        if created.count == 1 {
            try await connection.insertAudit(origin.record(
                "settings.created", resourceType: "user_settings", resourceID: user.postgresText))
            return true
        }
        let active = try await connection.query("SELECT 1 FROM users WHERE id = \(user) AND deleted_at IS NULL")
        return !active.isEmpty
    }

    // MARK: - Audit

    /// What an audit trail query keeps; nil filters keep everything.
    struct AuditFilter: Sendable {
        var userID: UUID?
        var action: String?
        var since: Date?
        /// Exclusive.
        var until: Date?
        /// Only rows with smaller ids: the previous page's last.
        var before: Int64?
    }

    /// `user`'s actions of the last `days` days, one entry per action, resource type and status,
    /// the most recent first.
    func recentActivity(
        of user: UUID, days: Int, includeFailures: Bool, deadline: ContinuousClock.Instant?
    ) async throws -> [ActivityRecord] {
        // Refused and failed attempts did not happen: counted only when asked for, apart.
        try await pool.records("""
            SELECT action, resource_type, status, count(*) AS count, max(created_at) AS last_at
            FROM audit_logs
            WHERE user_id = \(user) AND created_at > now() - \(days) * interval '1 day'
              AND (status = 'success' OR \(includeFailures))
            GROUP BY action, resource_type, status
            ORDER BY last_at DESC
            """, as: ActivityRecord.self, deadline: deadline)
    }

    /// The newest `limit` audit rows `filter` keeps, newest first.
    func auditLog(_ filter: AuditFilter, limit: Int, deadline: ContinuousClock.Instant?) async throws -> [AuditLogRecord] {
        try await pool.records("""
            SELECT id, user_id, action, resource_type, resource_id, status, principal, host(ip_address) AS ip, user_agent,
                   details, created_at
            FROM audit_logs
            WHERE (\(filter.userID)::uuid IS NULL OR user_id = \(filter.userID)::uuid)
              AND (\(filter.action)::text IS NULL OR action = \(filter.action)::text)
              AND (\(filter.since)::timestamptz IS NULL OR created_at >= \(filter.since)::timestamptz)
              AND (\(filter.until)::timestamptz IS NULL OR created_at < \(filter.until)::timestamptz)
              AND (\(filter.before)::bigint IS NULL OR id < \(filter.before)::bigint)
            ORDER BY id DESC
            LIMIT \(limit)
            """, as: AuditLogRecord.self, deadline: deadline)
    }
}
