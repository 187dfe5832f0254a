import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// How the content services behave where a deployment may choose.
public struct ContentConfiguration: Sendable {
    /// How many days back an offline client may date a habit completion (and how long a
    /// completion can be taken back). 0–30; default 7.
    public var offlineDays = 7

    public init() {}
}

/// What every content service shares: the pool, the audit trail, and the clock the database's
/// day arithmetic runs on (tests move it across DST changes and day boundaries).
struct ContentContext: Sendable {
    let pool: PostgresPool
    let trail: AuditTrail
    let now: @Sendable () -> Date
    var offlineDays = ContentConfiguration().offlineDays

    /// Where every statement of the content services lives.
    var store: ContentStore { ContentStore(pool: pool) }
}

/// Field checks of the content services, each failing with INVALID_ARGUMENT naming the field.
enum ContentValidate {
    static let categories = ["health", "learning", "personal", "work"]

    /// NOT_FOUND for a resource that is missing or someone else's (never "forbidden", which
    /// would confirm it exists), naming the request field that named it.
    static func notFound(_ resource: String, field: String) -> RPCError {
        let reason = resource.uppercased().replacingOccurrences(of: " ", with: "_") + "_NOT_FOUND"
        return RPCError(code: .notFound, message: "\(resource) not found", details: ErrorDetails(reason: reason, fields: ["field": field]))
    }

    /// Required, trimmed, 1–255 characters.
    static func title(_ text: String, field: String) throws -> String {
        let title = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !title.isEmpty else { throw Validate.invalid(field, "is required") }
        guard Validate.fits(title, 255) else { throw Validate.invalid(field, "is longer than 255 characters") }
        return title
    }

    static func description(_ text: String, field: String) throws -> String? {
        try Validate.optionalText(text, field: field, limit: 5000)
    }

    /// Nil for empty; one of `categories` otherwise.
    static func category(_ text: String, field: String) throws -> String? {
        guard !text.isEmpty else { return nil }
        guard categories.contains(text) else { throw Validate.invalid(field, "must be one of \(categories.joined(separator: ", ")) or empty") }
        return text
    }

    static func oneOf(_ text: String, _ allowed: [String], field: String) throws -> String {
        guard allowed.contains(text) else { throw Validate.invalid(field, "must be one of \(allowed.joined(separator: ", "))") }
        return text
    }

    /// Nil for empty; the id otherwise.
    static func optionalID(_ text: String, field: String) throws -> UUID? {
        text.isEmpty ? nil : try Validate.uuid(text, field: field)
    }

    /// A JSON object of at most 16 KiB.
    static func metadata(_ metadata: Google_Protobuf_Struct, field: String) throws -> JSONB {
        let json = try metadata.jsonString()
        guard json.utf8.count <= SettingsService.metadataLimit else {
            throw Validate.invalid(field, "is larger than \(SettingsService.metadataLimit / 1024) KiB of JSON")
        }
        return JSONB(json: json)
    }
}

/// Records of the content store as messages.
enum ContentMessages {
    static func id(_ id: UUID?) -> String { id?.postgresText ?? "" }

    static func metadata(_ json: JSONB) throws -> Google_Protobuf_Struct {
        try Google_Protobuf_Struct(jsonString: json.json)
    }

    static func quests(_ records: [QuestProgressRecord]) -> [QuestProgress] {
        records.map { record in
            QuestProgress.with {
                $0.questID = record.questID.postgresText
                $0.progress = record.progress
                $0.target = record.target
            }
        }
    }

    /// A reward (or evaluation) result; empty when the function paid nothing.
    static func reward(_ record: RewardRecord?) -> RewardResult {
        record.map(ProgressService.result) ?? RewardResult()
    }
}
