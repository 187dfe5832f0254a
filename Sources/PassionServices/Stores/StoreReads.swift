import PassionStore

/// The three shapes of read every store makes: one row, every row, or the document a SQL
/// function returns in its one column `result`, each decoded into records.
extension PostgresPool {
    /// The SELECT's first row as a `T`; nil when it returned none. Reads may share a connection
    /// (`PostgresPool.read`): a statement that writes uses `written`.
    func record<T: FieldsDecodable>(_ sql: SQL, as type: T.Type, deadline: ContinuousClock.Instant?) async throws -> T? {
        try await read(sql, deadline: deadline).first.map { try T(fields: $0) }
    }

    /// Every row of the SELECT as a `T`.
    func records<T: FieldsDecodable>(_ sql: SQL, as type: T.Type, deadline: ContinuousClock.Instant?) async throws -> [T] {
        try await read(sql, deadline: deadline).map { try T(fields: $0) }
    }

    /// The first row a statement that writes returns (`RETURNING`) as a `T`, on a connection of
    /// its own: it may wait for a lock, which would hold up reads sharing its connection.
    func written<T: FieldsDecodable>(_ sql: SQL, as type: T.Type, deadline: ContinuousClock.Instant?) async throws -> T? {
        try await withConnection(deadline: deadline) { connection in
            try await connection.query(sql).first.map { try T(fields: $0) }
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
