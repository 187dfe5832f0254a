import Foundation
import PassionIdentity
import PassionRPCServer
import PassionStore

/// The content domain's SQL: goals, habits and completions, quests, focus sessions and the
/// daily jobs, each statement answering typed records. One file per resource
/// (ContentStore+Goals.swift, ...); the services validate and map records to messages.
struct ContentStore: Sendable {
    let pool: PostgresPool

    /// Runs a read and returns its first row as a `T`; nil when it returned no row.
    func record<T: FieldsDecodable>(_ sql: SQL, as type: T.Type, deadline: ContinuousClock.Instant?) async throws -> T? {
        try await pool.withConnection(deadline: deadline) { connection in
            try await connection.query(sql).first.map { try T(fields: $0) }
        }
    }

    /// Runs a content function whose one column `result` is the document it returns (and
    /// stores, for a replay), read as a `T`.
    func result<T: FieldsDecodable>(_ sql: SQL, as type: T.Type, deadline: ContinuousClock.Instant?) async throws -> T {
        let text = try await pool.withConnection(deadline: deadline) { connection in
            try await connection.query(sql).first?.require("result", as: String.self)
        }
        guard let text else { throw RecordDecodingError(field: "result", problem: "the function returned no row") }
        return try T(fields: DocumentFields(text: text))
    }
}

extension AuditOrigin {
    /// The audit arguments every content function takes after its own: principal, address, agent.
    var sqlArguments: (principal: String, ip: InetAddress?, userAgent: String?) {
        (principal.description, ipAddress.map { InetAddress($0) }, userAgent)
    }
}
