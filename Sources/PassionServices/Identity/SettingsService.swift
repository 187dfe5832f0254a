import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Settings`: the caller's preferences, created with defaults on first use.
public struct SettingsService: Settings.ServiceProtocol {
    let pool: PostgresPool
    let trail: AuditTrail

    /// Metadata is client data, not a document store.
    public static let metadataLimit = 16 * 1024
    static let fields = [
        "theme", "notifications_enabled", "email_digest_enabled", "email_digest_frequency", "onboarding_completed", "language",
        "metadata", "pomodoro_minutes",
    ]

    public init(pool: PostgresPool, trail: AuditTrail) {
        self.pool = pool
        self.trail = trail
    }

    public func get(request: GetSettingsRequest, context: ServerContext) async throws -> UserSettings {
        let origin = AuditOrigin(context)
        let userID = try context.actingUser()
        let row = try await pool.transaction(deadline: context.deadline) { connection in
            try await Self.ensureDefaults(userID, origin: origin, connection: connection)
            return try await connection.query("SELECT * FROM user_settings WHERE user_id = \(userID)").first
        }
        guard let row else { throw UsersService.notFound }
        return try Self.settings(row)
    }

    public func update(request: UpdateSettingsRequest, context: ServerContext) async throws -> UserSettings {
        let origin = AuditOrigin(context)
        let userID = try context.actingUser()
        return try await trail.failures(
            origin, action: "settings.updated", resourceType: "user_settings", resourceID: userID.postgresText
        ) {
            let fields = try Validate.mask(request.updateMask, allowed: Self.fields)
            let given = request.settings
            if fields.contains("theme"), !["light", "dark", "system"].contains(given.theme) {
                throw Validate.invalid("settings.theme", "must be light, dark or system")
            }
            if fields.contains("email_digest_frequency"), !["daily", "weekly", "monthly"].contains(given.emailDigestFrequency) {
                throw Validate.invalid("settings.email_digest_frequency", "must be daily, weekly or monthly")
            }
            if fields.contains("language"),
                given.language.count > 10 || given.language.range(of: #"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"#, options: .regularExpression) == nil
            {
                throw Validate.invalid("settings.language", "must be a language tag such as en or pt-BR (at most 10 characters)")
            }
            if fields.contains("pomodoro_minutes"), !(1...480).contains(given.pomodoroMinutes) {
                throw Validate.invalid("settings.pomodoro_minutes", "must be 1–480")
            }
            let metadata = try fields.contains("metadata") ? Self.metadataJSON(given.metadata) : nil
            let row = try await pool.transaction(deadline: context.deadline) { connection -> Row? in
                try await Self.ensureDefaults(userID, origin: origin, connection: connection)
                let row = try await connection.query("""
                    UPDATE user_settings SET
                        theme = CASE WHEN \(fields.contains("theme")) THEN \(given.theme) ELSE theme END,
                        notifications_enabled = CASE WHEN \(fields.contains("notifications_enabled"))
                            THEN \(given.notificationsEnabled) ELSE notifications_enabled END,
                        email_digest_enabled = CASE WHEN \(fields.contains("email_digest_enabled"))
                            THEN \(given.emailDigestEnabled) ELSE email_digest_enabled END,
                        email_digest_frequency = CASE WHEN \(fields.contains("email_digest_frequency"))
                            THEN \(given.emailDigestFrequency) ELSE email_digest_frequency END,
                        onboarding_completed = CASE WHEN \(fields.contains("onboarding_completed"))
                            THEN \(given.onboardingCompleted) ELSE onboarding_completed END,
                        language = CASE WHEN \(fields.contains("language")) THEN \(given.language) ELSE language END,
                        pomodoro_minutes = CASE WHEN \(fields.contains("pomodoro_minutes"))
                            THEN \(given.pomodoroMinutes) ELSE pomodoro_minutes END,
                        metadata = CASE WHEN \(metadata != nil) THEN \(metadata.map(JSONB.init(json:)))::jsonb ELSE metadata END,
                        updated_at = now()
                    WHERE user_id = \(userID)
                    RETURNING *
                    """).first
                try await connection.insertAudit(origin.record(
                    "settings.updated", resourceType: "user_settings", resourceID: userID.postgresText,
                    details: ["fields": fields.sorted().joined(separator: ",")]))
                return row
            }
            guard let row else { throw UsersService.notFound }
            return try Self.settings(row)
        }
    }

    static func metadataJSON(_ metadata: Google_Protobuf_Struct) throws -> String {
        let json = try metadata.jsonString()
        guard json.utf8.count <= metadataLimit else {
            throw Validate.invalid("settings.metadata", "is larger than \(metadataLimit / 1024) KiB of JSON")
        }
        return json
    }

    /// Stores the defaults for an active user that has no settings yet (audited as created).
    static func ensureDefaults(_ userID: UUID, origin: AuditOrigin, connection: PostgresConnection) async throws {
        let created = try await connection.query("""
            INSERT INTO user_settings (user_id)
            SELECT id FROM users WHERE id = \(userID) AND deleted_at IS NULL
            ON CONFLICT (user_id) DO NOTHING
            RETURNING id
            """)
        if created.count == 1 {
            try await connection.insertAudit(origin.record(
                "settings.created", resourceType: "user_settings", resourceID: userID.postgresText))
            return
        }
        let active = try await connection.query("SELECT 1 FROM users WHERE id = \(userID) AND deleted_at IS NULL")
        if active.isEmpty { throw UsersService.notFound }
    }

    static func settings(_ row: Row) throws -> UserSettings {
        var settings = UserSettings()
        settings.theme = try row.require("theme", as: String.self)
        settings.notificationsEnabled = try row.require("notifications_enabled", as: Bool.self)
        settings.emailDigestEnabled = try row.require("email_digest_enabled", as: Bool.self)
        settings.emailDigestFrequency = try row.require("email_digest_frequency", as: String.self)
        settings.onboardingCompleted = try row.require("onboarding_completed", as: Bool.self)
        settings.language = try row.require("language", as: String.self)
        settings.metadata = try Google_Protobuf_Struct(jsonString: try row.require("metadata", as: JSONB.self).json)
        settings.pomodoroMinutes = try row.require("pomodoro_minutes", as: Int32.self)
        settings.updatedAt = Google_Protobuf_Timestamp(try row.require("updated_at", as: Date.self))
        return settings
    }
}
