import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Settings`: the caller's preferences, created with defaults on first use.
public struct SettingsService: Settings.ServiceProtocol {
    let store: IdentityStore
    let trail: AuditTrail

    /// Metadata is client data, not a document store.
    public static let metadataLimit = 16 * 1024
    static let fields = [
        "theme", "notifications_enabled", "email_digest_enabled", "email_digest_frequency", "onboarding_completed", "language",
        "metadata", "pomodoro_minutes",
    ]

    public init(pool: PostgresPool, trail: AuditTrail) {
        self.store = IdentityStore(pool: pool)
        self.trail = trail
    }

    public func get(request: GetSettingsRequest, context: ServerContext) async throws -> UserSettings {
        let origin = AuditOrigin(context)
        let userID = try context.actingUser()
        guard let record = try await store.settings(of: userID, origin: origin, deadline: context.deadline) else {
            throw UsersService.notFound
        }
        return try Self.settings(record)
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
            let draft = IdentityStore.SettingsDraft(
                theme: given.theme, notificationsEnabled: given.notificationsEnabled, emailDigestEnabled: given.emailDigestEnabled,
                emailDigestFrequency: given.emailDigestFrequency, onboardingCompleted: given.onboardingCompleted, language: given.language,
                pomodoroMinutes: given.pomodoroMinutes, metadata: metadata)
            let record = try await store.updateSettings(of: userID, fields: fields, from: draft, origin: origin, deadline: context.deadline)
            guard let record else { throw UsersService.notFound }
            return try Self.settings(record)
        }
    }

    static func metadataJSON(_ metadata: Google_Protobuf_Struct) throws -> String {
        let json = try metadata.jsonString()
        guard json.utf8.count <= metadataLimit else {
            throw Validate.invalid("settings.metadata", "is larger than \(metadataLimit / 1024) KiB of JSON")
        }
        return json
    }

    static func settings(_ record: SettingsRecord) throws -> UserSettings {
        var settings = UserSettings()
        settings.theme = record.theme
        settings.notificationsEnabled = record.notificationsEnabled
        settings.emailDigestEnabled = record.emailDigestEnabled
        settings.emailDigestFrequency = record.emailDigestFrequency
        settings.onboardingCompleted = record.onboardingCompleted
        settings.language = record.language
        settings.metadata = try Google_Protobuf_Struct(jsonString: record.metadata.json)
        settings.pomodoroMinutes = record.pomodoroMinutes
        settings.updatedAt = Google_Protobuf_Timestamp(record.updatedAt)
        return settings
    }
}
