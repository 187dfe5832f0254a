import CLibPQ
import Foundation

/// A statement's result while libpq still holds it, read in place: for results too large to
/// copy value by value into `Rows` first (a whole leaderboard at start-up), where each `String`
/// made and dropped per value cost more than the database's work. Valid only inside the
/// closure `PostgresConnection.query(_:reading:)` hands it to: never return or keep it, since
/// libpq frees the result when the closure ends.
public struct ResultView {
    private let result: OpaquePointer

    init(_ result: OpaquePointer) {
        self.result = result
    }

    /// Rows in the result.
    public var count: Int { Int(PQntuples(result)) }

    /// The position of the column named `name`, for the accessors below.
    public func column(_ name: String) throws -> Int {
        let index = Int(PQfnumber(result, name))
        guard index >= 0 else { throw PostgresDecodingError(type: "column", text: name) }
        return index
    }

    /// Whether the value at `row`, `column` is SQL NULL.
    public func isNull(_ row: Int, _ column: Int) throws -> Bool {
        try checkBounds(row, column, type: "NULL")
        return PQgetisnull(result, Int32(row), Int32(column)) == 1
    }

    private func checkBounds(_ row: Int, _ column: Int, type: String) throws {
        guard row >= 0, row < count, column >= 0, column < Int(PQnfields(result)) else {
            throw PostgresDecodingError(type: type, text: "row \(row), column \(column) out of range")
        }
    }

    /// A NOT NULL uuid column's value.
    public func uuid(_ row: Int, _ column: Int) throws -> UUID {
        try withText(row, column, type: "UUID") { text in
            var uuid: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            let parsed = withUnsafeMutableBytes(of: &uuid) { out in UUID.parse(text, into: out) }
            return parsed ? UUID(uuid: uuid) : nil
        }
    }

    /// A NOT NULL integer column's value (int2, int4 or int8).
    public func int64(_ row: Int, _ column: Int) throws -> Int64 {
        try withText(row, column, type: "Int64") { Self.integer($0) }
    }

    /// The value's text handed to `parse`; a NULL, or text `parse` refuses, throws naming `type`.
    private func withText<T>(_ row: Int, _ column: Int, type: String, _ parse: (UnsafeBufferPointer<UInt8>) -> T?) throws -> T {
        try checkBounds(row, column, type: type)
        guard PQgetisnull(result, Int32(row), Int32(column)) == 0, let start = PQgetvalue(result, Int32(row), Int32(column)) else {
            throw PostgresDecodingError(type: "\(type) (NULL)", text: String(cString: PQfname(result, Int32(column))))
        }
        let text = UnsafeBufferPointer(
            start: UnsafeRawPointer(start).assumingMemoryBound(to: UInt8.self),
            count: Int(PQgetlength(result, Int32(row), Int32(column))))
        guard let value = parse(text) else {
            throw PostgresDecodingError(type: type, text: String(decoding: text, as: UTF8.self))
        }
        return value
    }

    /// Decimal digits with an optional minus sign; nil for anything else or on overflow.
    static func integer(_ text: UnsafeBufferPointer<UInt8>) -> Int64? {
        var index = 0
        let negative = text.first == UInt8(ascii: "-")
        if negative { index = 1 }
        guard index < text.count else { return nil }
        var value: Int64 = 0
        while index < text.count {
            let digit = text[index] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            let (shifted, overflowed) = value.multipliedReportingOverflow(by: 10)
            let (next, overflowedAgain) = negative
                ? shifted.subtractingReportingOverflow(Int64(digit)) : shifted.addingReportingOverflow(Int64(digit))
            guard !overflowed, !overflowedAgain else { return nil }
            value = next
            index += 1
        }
        return value
    }
}

extension PostgresConnection {
    /// Runs `sql` like `query(_:)` and hands its rows to `read` in place, before libpq frees them.
    public func query<Value>(_ sql: SQL, reading read: (ResultView) throws -> Value) async throws -> Value {
        try await query(sql, readingResult: { try read(ResultView($0.result)) })
    }
}
