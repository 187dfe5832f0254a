import CLibPQ
import Foundation
import Synchronization

/// A libpq result, freed when the last `Rows` or `Row` reading it is gone.
///
/// Unchecked Sendable: libpq never changes a result after making it, and reading one from
/// several threads at once is safe (libpq's documentation: results "can be passed around freely
/// between threads").
final class ResultStorage: @unchecked Sendable {
    let result: OpaquePointer
    /// Where the next column lookup starts: records read their columns in the order the
    /// statement lists them, so starting after the last one found makes each lookup one
    /// comparison instead of a scan (an 11-column dashboard row took 66 `strcmp`s). Only a
    /// hint: readers on several threads at once may overwrite each other's.
    private let nextField = Atomic<Int32>(0)

    init(_ result: OpaquePointer) {
        self.result = result
    }

    /// The position of the column named exactly `name`. Not PQfnumber, which folds case unless
    /// the name is in double quotes; and through withCString, since a String handed to C
    /// directly is copied into a new array.
    func field(named name: String) -> Int32? {
        let count = PQnfields(result)
        guard count > 0 else { return nil }
        let start = min(max(nextField.load(ordering: .relaxed), 0), count - 1)
        let found: Int32? = name.withCString { wanted in
            var field = start
            repeat {
                if strcmp(PQfname(result, field), wanted) == 0 { return field }
                field = field + 1 == count ? 0 : field + 1
            } while field != start
            return nil
        }
        if let found { nextField.store(found + 1 == count ? 0 : found + 1, ordering: .relaxed) }
        return found
    }

    deinit {
        PQclear(result)
    }
}

/// The rows a statement returned, read in place from libpq's result: a value is made only when
/// a caller decodes it. Copying every value into strings first cost a read five allocations
/// and more than the decoding that followed.
public struct Rows: Sendable, Sequence {
    private let storage: ResultStorage

    init(_ storage: ResultStorage) {
        self.storage = storage
    }

    public var columns: [String] { Row(storage: storage, index: 0).columns }

    /// Rows the statement affected (INSERT/UPDATE/DELETE), or returned.
    public var affected: Int {
        Int(String(cString: PQcmdTuples(storage.result))) ?? count
    }

    public var count: Int { Int(PQntuples(storage.result)) }
    public var isEmpty: Bool { count == 0 }
    public var first: Row? { isEmpty ? nil : Row(storage: storage, index: 0) }

    public func makeIterator() -> AnyIterator<Row> {
        var index = 0
        let count = count
        return AnyIterator { [storage] in
            guard index < count else { return nil }
            defer { index += 1 }
            return Row(storage: storage, index: Int32(index))
        }
    }
}

/// One row: typed access by column name.
public struct Row: Sendable {
    fileprivate let storage: ResultStorage
    fileprivate let index: Int32

    /// The result's column names, in order.
    public var columns: [String] {
        (0..<PQnfields(storage.result)).map { String(cString: PQfname(storage.result, $0)) }
    }

    /// The column's value, or nil for SQL NULL; throws when the column is missing or does not
    /// read as `T`.
    public func decode<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws -> T? {
        let result = storage.result
        guard let field = storage.field(named: column) else { throw PostgresDecodingError(type: "column", text: column) }
        guard PQgetisnull(result, index, field) == 0, let value = PQgetvalue(result, index, field) else { return nil }
        return try T(postgresText: String(cString: value))
    }

    /// A NOT NULL column's value.
    public func require<T: PostgresDecodable>(_ column: String, as type: T.Type = T.self) throws -> T {
        guard let value = try decode(column, as: type) else {
            throw PostgresDecodingError(type: "\(T.self) (NULL)", text: column)
        }
        return value
    }
}
