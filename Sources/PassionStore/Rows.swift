import CLibPQ

/// The rows a statement returned, copied out of libpq's result.
public struct Rows: Sendable, Sequence {
    public let columns: [String]
    private let values: [[String?]]
    /// Rows the statement affected (INSERT/UPDATE/DELETE), or returned.
    public let affected: Int

    init(columns: [String], values: [[String?]], affected: Int) {
        self.columns = columns
        self.values = values
        self.affected = affected
    }

    /// Every value of a successful libpq result, as text.
    init(copying result: OpaquePointer) {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        var values: [[String?]] = []
        values.reserveCapacity(rowCount)
        for row in 0..<rowCount {
            var record: [String?] = []
            record.reserveCapacity(columnCount)
            for column in 0..<columnCount {
                if PQgetisnull(result, Int32(row), Int32(column)) == 1 {
                    record.append(nil)
                } else {
                    record.append(String(cString: PQgetvalue(result, Int32(row), Int32(column))))
                }
            }
            values.append(record)
        }
        let affected = Int(String(cString: PQcmdTuples(result))) ?? rowCount
        self.init(columns: columns, values: values, affected: affected)
    }

    public var count: Int { values.count }
    public var isEmpty: Bool { values.isEmpty }
    public var first: Row? { values.first.map { Row(columns: columns, values: $0) } }

    public func makeIterator() -> AnyIterator<Row> {
        var index = 0
        return AnyIterator {
            guard index < values.count else { return nil }
            defer { index += 1 }
            return Row(columns: columns, values: values[index])
        }
    }
}

/// One row: typed access by column name.
public struct Row: Sendable {
    let columns: [String]
    let values: [String?]

    /// The column's value, or nil for SQL NULL; throws when the column is missing or does not
    /// read as `T`.
    public func decode<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws -> T? {
        guard let index = columns.firstIndex(of: column) else {
            throw PostgresDecodingError(type: "column", text: column)
        }
        return try values[index].map { try T(postgresText: $0) }
    }

    /// A NOT NULL column's value.
    public func require<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws -> T {
        guard let value = try decode(column, as: type) else {
            throw PostgresDecodingError(type: "\(T.self) (NULL)", text: column)
        }
        return value
    }
}
