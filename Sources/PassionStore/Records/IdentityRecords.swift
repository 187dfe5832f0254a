import Foundation

/// A `users` row as every User message is built from it.
public struct UserRecord: FieldsDecodable, Equatable {
    public var id: UUID
    public var email: String
    public var emailVerified: Bool
    public var displayName: String?
    public var pictureURL: String?
    public var timeZone: String?
    public var provider: String?
    public var isActive: Bool
    public var createdAt: Date
    public var updatedAt: Date
    public var deletedAt: Date?

    public static let columns = """
        id, email, email_verified, display_name, profile_picture_url, timezone, oauth_provider, is_active, created_at, updated_at, deleted_at
        """

    public init(fields: RecordSource) throws {
        id = try fields.require("id")
        email = try fields.require("email")
        emailVerified = try fields.require("email_verified")
        displayName = try fields.optional("display_name")
        pictureURL = try fields.optional("profile_picture_url")
        timeZone = try fields.optional("timezone")
        provider = try fields.optional("oauth_provider")
        isActive = try fields.require("is_active")
        createdAt = try fields.require("created_at")
        updatedAt = try fields.require("updated_at")
        deletedAt = try fields.optional("deleted_at")
    }
}

/// A user as ListUsers pages through them, with `created_at` in exact microseconds for the page token.
public struct ListedUserRecord: FieldsDecodable, Equatable {
    public var user: UserRecord
    public var cursorMicros: Int64

    public init(fields: RecordSource) throws {
        user = try UserRecord(fields: fields)
        cursorMicros = try fields.require("cursor_us")
    }
}

/// The active account holding a verified address, as a first sign-in finds it before linking.
public struct EmailHolderRecord: FieldsDecodable, Equatable {
    public var id: UUID
    /// Nil while no sign-in identity is linked to the account: a sign-in may link its own.
    public var provider: String?
    public var subject: String?

    public init(fields: RecordSource) throws {
        id = try fields.require("id")
        provider = try fields.optional("oauth_provider")
        subject = try fields.optional("oauth_id")
    }
}

/// A live `sessions` row; `hash` is its id, the SHA-256 of the token.
public struct SessionRecord: FieldsDecodable, Equatable {
    public var hash: [UInt8]
    public var createdAt: Date
    public var expiresAt: Date
    public var lastActivity: Date

    public init(fields: RecordSource) throws {
        hash = try fields.require("id", as: Bytes.self).bytes
        createdAt = try fields.require("created_at")
        expiresAt = try fields.require("expires_at")
        lastActivity = try fields.require("last_activity")
    }
}

/// A `user_settings` row.
public struct SettingsRecord: FieldsDecodable, Equatable {
    public var theme: String
    public var notificationsEnabled: Bool
    public var emailDigestEnabled: Bool
    public var emailDigestFrequency: String
    public var onboardingCompleted: Bool
    public var language: String
    public var metadata: JSONB
    public var pomodoroMinutes: Int32
    public var updatedAt: Date

    public init(fields: RecordSource) throws {
        theme = try fields.require("theme")
        notificationsEnabled = try fields.require("notifications_enabled")
        emailDigestEnabled = try fields.require("email_digest_enabled")
        emailDigestFrequency = try fields.require("email_digest_frequency")
        onboardingCompleted = try fields.require("onboarding_completed")
        language = try fields.require("language")
        metadata = try fields.require("metadata")
        pomodoroMinutes = try fields.require("pomodoro_minutes")
        updatedAt = try fields.require("updated_at")
    }
}

/// One kind of action in a user's recent activity: how often it happened, and when last.
public struct ActivityRecord: FieldsDecodable, Equatable {
    public var action: String
    public var resourceType: String?
    public var status: String
    public var count: Int64
    public var lastAt: Date

    public init(fields: RecordSource) throws {
        action = try fields.require("action")
        resourceType = try fields.optional("resource_type")
        status = try fields.require("status")
        count = try fields.require("count")
        lastAt = try fields.require("last_at")
    }
}

/// An `audit_logs` row, its address read as text.
public struct AuditLogRecord: FieldsDecodable, Equatable {
    public var id: Int64
    /// Nil when the row names no user (a service call, or a user id that named nobody).
    public var userID: UUID?
    public var action: String
    public var resourceType: String?
    public var resourceID: String?
    public var status: String?
    public var principal: String?
    public var ipAddress: String?
    public var userAgent: String?
    public var details: JSONB?
    public var createdAt: Date

    public init(fields: RecordSource) throws {
        id = try fields.require("id")
        userID = try fields.optional("user_id")
        action = try fields.require("action")
        resourceType = try fields.optional("resource_type")
        resourceID = try fields.optional("resource_id")
        status = try fields.optional("status")
        principal = try fields.optional("principal")
        ipAddress = try fields.optional("ip")
        userAgent = try fields.optional("user_agent")
        details = try fields.optional("details")
        createdAt = try fields.require("created_at")
    }
}
