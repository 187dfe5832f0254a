import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import PassionTLS
import SwiftProtobuf

/// Input checks every service shares: each failure is INVALID_ARGUMENT naming the field, so a
/// client can point at it.
enum Validate {
    /// Nil for empty; a real calendar date written YYYY-MM-DD otherwise.
    static func date(_ text: String, field: String) throws -> LocalDate? {
        guard !text.isEmpty else { return nil }
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard text.count == 10, parts.count == 3, let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
            (1900...9999).contains(year), (1...12).contains(month), (1...daysIn(month: month, year: year)).contains(day)
        else { throw Validate.invalid(field, "is not a date written YYYY-MM-DD") }
        return LocalDate(year: year, month: month, day: day)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    static func invalid(_ field: String, _ message: String) -> RPCError {
        RPCError(
            code: .invalidArgument, message: "\(field): \(message)",
            details: ErrorDetails(reason: "INVALID_FIELD", fields: ["field": field]))
    }

    /// Whether `text` fits a column of `limit` characters as PostgreSQL counts them (code
    /// points): Swift's `count` counts grapheme clusters, so "é" written e + U+0301 is one
    /// character to Swift and two to the database.
    static func fits(_ text: String, _ limit: Int) -> Bool {
        text.unicodeScalars.count <= limit
    }

    /// Trimmed, lower-cased; one `@` with text on both sides and a dot in the domain.
    static func email(_ text: String, field: String) throws -> String {
        let email = text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        guard !email.isEmpty else { throw invalid(field, "is required") }
        guard fits(email, 255) else { throw invalid(field, "is longer than 255 characters") }
        guard !email.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw invalid(field, "contains control characters")
        }
        guard email.range(of: #"^[^@\s]+@[^@\s]+\.[^@\s]+$"#, options: .regularExpression) != nil else {
            throw invalid(field, "is not an email address")
        }
        return email
    }

    /// Nil for empty (meaning "none"); an IANA identifier otherwise.
    static func timeZone(_ text: String, field: String) throws -> String? {
        let zone = text.trimmingCharacters(in: .whitespaces)
        guard !zone.isEmpty else { return nil }
        // Abbreviations and offsets ("PST", "GMT+5") are not zones: they lose DST rules.
        guard fits(zone, 50), zone.contains("/") || zone == "UTC", TimeZone(identifier: zone) != nil else {
            throw invalid(field, "\"\(zone.prefix(60))\" is not an IANA time zone such as Europe/Berlin")
        }
        return zone
    }

    /// Nil for empty; at most `limit` characters and not only spaces otherwise.
    static func optionalText(_ text: String, field: String, limit: Int = 255) throws -> String? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { return nil }
        guard fits(trimmed, limit) else { throw invalid(field, "is longer than \(limit) characters") }
        return trimmed
    }

    static func url(_ text: String, field: String) throws -> String? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { return nil }
        guard fits(trimmed, 500) else { throw invalid(field, "is longer than 500 characters") }
        guard trimmed.hasPrefix("https://") || trimmed.hasPrefix("http://"), URL(string: trimmed)?.host != nil else {
            throw invalid(field, "is not an http(s) URL")
        }
        return trimmed
    }

    /// Exactly 36 characters: Foundation's parser reads a C string, so "<uuid>\0junk" would
    /// otherwise pass as the UUID before the NUL.
    static func uuid(_ text: String, field: String) throws -> UUID {
        guard text.utf8.count == 36, let id = (try? UUID(postgresText: text)) else { throw invalid(field, "is not a UUID") }
        return id
    }

    /// A timestamp from a client, within years 1–9999 with valid nanoseconds.
    static func timestamp(_ timestamp: Google_Protobuf_Timestamp, field: String) throws -> Date {
        guard (-62_135_596_800...253_402_300_799).contains(timestamp.seconds), (0...999_999_999).contains(timestamp.nanos) else {
            throw invalid(field, "is not a time between the years 1 and 9999")
        }
        return timestamp.date
    }

    /// The paths of a field mask, each one of `allowed` ("*" means all of them); empty is refused
    /// so that a forgotten mask never resets fields.
    static func mask(_ mask: Google_Protobuf_FieldMask, allowed: [String], field: String = "update_mask") throws -> Set<String> {
        guard !mask.paths.isEmpty else { throw invalid(field, "name the fields to change (or \"*\")") }
        if mask.paths == ["*"] { return Set(allowed) }
        for path in mask.paths where !allowed.contains(path) {
            throw invalid(field, "unknown field \"\(path.prefix(60))\"; one of \(allowed.joined(separator: ", "))")
        }
        return Set(mask.paths)
    }

    static func pageSize(_ requested: Int32, default defaultSize: Int, maximum: Int, field: String = "page_size") throws -> Int {
        guard requested >= 0, requested <= maximum else { throw invalid(field, "must be 0–\(maximum)") }
        return requested == 0 ? defaultSize : Int(requested)
    }
}

extension ServerContext {
    /// The user a user-scoped call acts on: the signed-in user or the one a service names.
    /// Every user-scoped query filters by it.
    func actingUser() throws -> UUID {
        guard let text = principal.userID, let id = (try? UUID(postgresText: text)) else {
            throw RPCError(code: .permissionDenied, message: "this call acts on a user's data and names no user")
        }
        return id
    }

    /// The SHA-256 of the session token this call was made with, if any.
    var sessionHash: [UInt8]? {
        principal.sessionID.flatMap { Crypto.bytes(hex: $0) }
    }
}

extension Google_Protobuf_Timestamp {
    /// PostgreSQL keeps microseconds; a `Date` (a Double) adds noise below them, so the
    /// timestamp is rounded back to the microsecond the database holds.
    init(_ date: Date?) {
        guard let date else {
            self.init()
            return
        }
        let micros = (date.timeIntervalSince1970 * 1_000_000).rounded()
        let seconds = (micros / 1_000_000).rounded(.down)
        self.init(seconds: Int64(seconds), nanos: Int32((micros - seconds * 1_000_000) * 1000))
    }
}
