import PassionStore

/// The three shapes of read every store makes: one row, every row, or the document a SQL
/// function returns in its one column `result`, each decoded into records.
extension PostgresPool {
    /// The statement's first row as a `T`; nil when it returned none.
    func record<T: FieldsDecodable>(_ sql: SQL, as type: T.Type, deadline: ContinuousClock.Instant?) async throws -> T? {
        try await withConnection(deadline: deadline) { connection in
            try await connection.query(sql).first.map { try T(fields: $0) }
        }
    }

    /// Every row of the statement as a `T`.
    func records<T: FieldsDecodable>(_ sql: SQL, as type: T.Type, deadline: ContinuousClock.Instant?) async throws -> [T] {
        try await withConnection(deadline: deadline) { connection in
            try await connection.query(sql).map { try T(fields: $0) }
        }
    }

    /// The document a function returns (and, for content calls, stores for a replay) as a `T`.
    func result<T: FieldsDecodable>(_ sql: SQL, as type: T.Type, deadline: ContinuousClock.Instant?) async throws -> T {
        let text = try await withConnection(deadline: deadline) { connection in
            try await connection.query(sql).first?.require("result", as: String.self)
        }
        guard let text else { throw RecordDecodingError(field: "result", problem: "the function returned no row") }
        return try T(fields: DocumentFields(text: text))
    }
}
