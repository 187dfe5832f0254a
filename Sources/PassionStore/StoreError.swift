import Foundation
import PassionJSON
import PassionRPC

/// A failure from PostgreSQL or from reaching it. Callers see `rpcError`, which names neither
/// SQLSTATEs nor the schema's constraints; `description` (for logs) names both.
public struct StoreError: Error, Sendable, CustomStringConvertible, RPCErrorConvertible {
    /// Five-character SQLSTATE, or "08000"-class codes for connection failures detected locally.
    public var sqlState: String
    /// The server's primary message; kept for logs only, because it can quote values.
    public var serverMessage: String
    /// Constraint named by the server, for example `goals_priority_range`.
    public var constraint: String?
    public var table: String?
    public var column: String?
    /// DETAIL and HINT. For the schema's own client errors (SQLSTATE P0A1x) the hint is the
    /// reason and the detail a JSON object of detail fields; otherwise they are for logs only.
    public var detail: String?
    public var hint: String?
    /// A prepared statement met a schema change that altered its result columns (0A000): it ran
    /// not at all, and runs once prepared anew (`PlanEpoch`).
    public internal(set) var stalePlan = false

    public init(sqlState: String, serverMessage: String, constraint: String? = nil, table: String? = nil, column: String? = nil) {
        self.sqlState = sqlState
        self.serverMessage = serverMessage
        self.constraint = constraint
        self.table = table
        self.column = column
    }

    /// What a caller sees: SQLSTATE mapped to a status, with a message free of SQL, data and
    /// the schema's names (constraint names and SQLSTATEs stay in `description`, for logs). A
    /// violation a caller can cause should be caught by validation with its own clear error
    /// first; these are the last line.
    public var rpcError: RPCError {
        let classCode = String(sqlState.prefix(2))
        var fields: [String: String] = [:]
        if let column { fields["field"] = column }
        if let code = Self.schemaErrorCodes[sqlState] {
            // Raised by our own functions with a message written for callers (docs/schema.md).
            var fields: [String: String] = [:]
            if let detail, case .object(let members)? = try? StrictJSON.parse(detail.utf8) {
                for (key, value) in members { fields[key] = value.string ?? value.text }
            }
            return RPCError(code: code, message: serverMessage, details: ErrorDetails(reason: hint ?? "SCHEMA_ERROR", fields: fields))
        }
        switch (sqlState, classCode) {
        case ("23505", _):
            return RPCError(code: .alreadyExists, message: "it already exists", details: ErrorDetails(reason: "UNIQUE_VIOLATION", fields: fields))
        case ("23514", _):
            return RPCError(code: .invalidArgument, message: "a value is outside what is allowed", details: ErrorDetails(reason: "CHECK_VIOLATION", fields: fields))
        case ("23502", _):
            return RPCError(code: .invalidArgument, message: "\(column ?? "a field") is required", details: ErrorDetails(reason: "NOT_NULL_VIOLATION", fields: fields))
        case ("23503", _):
            return RPCError(code: .failedPrecondition, message: "it refers to something that does not exist", details: ErrorDetails(reason: "FOREIGN_KEY_VIOLATION", fields: fields))
        case ("23001", _):
            return RPCError(code: .failedPrecondition, message: "the change is not allowed", details: ErrorDetails(reason: "RESTRICT_VIOLATION", fields: fields))
        case ("40001", _), ("40P01", _):
            return RPCError(code: .aborted, message: "concurrent update conflict; retry", details: ErrorDetails(reason: "SERIALIZATION_FAILURE"))
        case ("57014", _):
            return RPCError(code: .deadlineExceeded, message: "database statement timed out or was cancelled")
        case ("53300", _), (_, "08"), ("57P01", _), ("57P02", _), ("57P03", _):
            return RPCError(code: .unavailable, message: "database unavailable")
        case (_, "22"):
            return RPCError(code: .invalidArgument, message: "a value is invalid", details: ErrorDetails(reason: "DATA_EXCEPTION", fields: fields))
        case (_, "53"):
            return RPCError(code: .resourceExhausted, message: "database out of resources")
        default:
            return RPCError(code: .internal, message: "database error")
        }
    }

    /// The client errors our PL/pgSQL functions raise (0007_gamification_engine.sql,
    /// 0008_content_engine.sql), each with its reason as HINT; `VocabularyTests` checks this
    /// table against the functions' text.
    public static let schemaErrorCodes: [String: StatusCode] = [
        "P0A10": .failedPrecondition, "P0A11": .notFound, "P0A12": .invalidArgument, "P0A13": .notFound,
        "P0A14": .failedPrecondition, "P0A15": .alreadyExists, "P0A16": .alreadyExists, "P0A17": .failedPrecondition,
        "P0A18": .notFound,
    ]

    /// Whether the whole transaction may simply be run again.
    public var isRetryableTransactionFailure: Bool { sqlState == "40001" || sqlState == "40P01" || stalePlan }

    public var description: String {
        "SQLSTATE \(sqlState)\(constraint.map { " (\($0))" } ?? ""): \(serverMessage)"
    }

    static func connection(_ message: String) -> StoreError {
        StoreError(sqlState: "08006", serverMessage: message)
    }
}
