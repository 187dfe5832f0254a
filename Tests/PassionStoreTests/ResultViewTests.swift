import Foundation
import PassionStore
import PassionTestSupport
import Testing

/// Results read in place (`query(_:reading:)`, the leaderboard load): the same values `Rows`
/// decodes, every bad value refused with the column or text it came from, and the connection
/// fit for its next statement after a failure.
@Suite("Results read in place")
struct ResultViewTests {
    @Test("uuids and integers of every width read as Rows decodes them, over many rows and across the int8 range")
    func readsWhatRowsReads() async throws {
        let pool = try await TestDatabase.migratedPool(size: 1)
        defer { Task { await pool.shutdown() } }
        try await pool.withConnection { connection in
            let sql: SQL = """
                SELECT md5(g::text)::uuid AS id, (g * 37 - 5000)::int8 AS big, (g - 300)::int4 AS mid, g::int2 AS small
                FROM generate_series(1, 2000) g
                UNION ALL SELECT 'FFFFFFFF-0000-0000-0000-0000000000AB', 9223372036854775807, -2147483648, -32768
                UNION ALL SELECT '00000000-0000-0000-0000-000000000000', -9223372036854775808, 0, 0
                """
            let rows = Array(try await connection.query(sql))
            let read = try await connection.query(sql) { result in
                let (id, big, mid, small) = (try result.column("id"), try result.column("big"), try result.column("mid"), try result.column("small"))
                return try (0..<result.count).map { row in
                    (try result.uuid(row, id), try result.int64(row, big), try result.int64(row, mid), try result.int64(row, small))
                }
            }
            #expect(read.count == 2002)
            #expect(rows.count == read.count)
            for (row, value) in zip(rows, read) {
                #expect(try row.require("id", as: UUID.self) == value.0)
                #expect(try row.require("big", as: Int64.self) == value.1)
                #expect(try row.require("mid", as: Int64.self) == value.2)
                #expect(try row.require("small", as: Int64.self) == value.3)
            }
            #expect(read[2000].0 == UUID(uuidString: "ffffffff-0000-0000-0000-0000000000ab"))
            // PostgreSQL writes uuids in lower case; text in upper case reads the same.
            let upper = try await connection.query("SELECT 'FFFFFFFF-0000-0000-0000-0000000000AB'::text AS id") { try $0.uuid(0, 0) }
            #expect(upper == read[2000].0)
            #expect(read[2000].1 == .max)
            #expect(read[2001].1 == .min)
        }
    }

    @Test("NULL, text of another type, out of range, a missing column or row: refused, naming what was read")
    func badValues() async throws {
        let pool = try await TestDatabase.migratedPool(size: 1)
        defer { Task { await pool.shutdown() } }
        try await pool.withConnection { connection in
            let cases: [(select: String, type: String, text: String)] = [
                ("NULL::uuid", "UUID (NULL)", "value"),
                ("'not-a-uuid'", "UUID", "not-a-uuid"),
                ("'00000000-0000-0000-0000-00000000000g'", "UUID", "00000000-0000-0000-0000-00000000000g"),
                ("'00000000-0000-0000-0000-0000000000001'", "UUID", "00000000-0000-0000-0000-0000000000001"),
                ("NULL::int8", "Int64 (NULL)", "value"),
                ("3.5", "Int64", "3.5"),
                ("''", "Int64", ""),
                ("'-'", "Int64", "-"),
                ("' 7'", "Int64", " 7"),
                ("9223372036854775808", "Int64", "9223372036854775808"),
                ("-9223372036854775809", "Int64", "-9223372036854775809"),
            ]
            for bad in cases {
                let error = await #expect(throws: PostgresDecodingError.self, "\(bad.select)") {
                    try await connection.query("SELECT \(unsafeSQL: bad.select) AS value") { result in
                        bad.type.hasPrefix("UUID") ? try result.uuid(0, 0).uuidString : String(try result.int64(0, 0))
                    }
                }
                #expect(error?.type == bad.type, "\(bad.select)")
                #expect(error?.text == bad.text, "\(bad.select)")
            }
            let missing = await #expect(throws: PostgresDecodingError.self) {
                try await connection.query("SELECT 1 AS value") { result in try result.column("other") }
            }
            #expect(missing?.text == "other")
            let beyond = await #expect(throws: PostgresDecodingError.self) {
                try await connection.query("SELECT 1 AS value") { result in try result.int64(1, 0) }
            }
            #expect(beyond?.type == "Int64")
            let nulls = try await connection.query("SELECT 1 AS value, NULL::int8 AS missing") { result in
                (try result.isNull(0, 0), try result.isNull(0, 1))
            }
            #expect(nulls == (false, true))
            await #expect(throws: PostgresDecodingError.self) {
                try await connection.query("SELECT 1 AS value") { result in try result.isNull(0, 1) }
            }
        }
    }

    @Test("a failing statement throws its SQLSTATE, a failing reader its error; the connection then runs the next statement, in a transaction too")
    func failuresLeaveTheConnectionUsable() async throws {
        let pool = try await TestDatabase.migratedPool(size: 1)
        defer { Task { await pool.shutdown() } }
        struct ReaderGaveUp: Error {}
        try await pool.withConnection { connection in
            let failed = await #expect(throws: StoreError.self) {
                try await connection.query("SELECT 1 / (random() * 0)::int AS value") { result in result.count }
            }
            #expect(failed?.sqlState == "22012")
            await #expect(throws: ReaderGaveUp.self) {
                try await connection.query("SELECT generate_series(1, 10) AS value") { _ in throw ReaderGaveUp() }
            }
            let next = try await connection.query("SELECT 41 + 1 AS value") { try $0.int64(0, 0) }
            #expect(next == 42)
        }
        // In a transaction the statement travels in one pipeline with BEGIN.
        let total = try await pool.transaction { connection in
            try await connection.query("SELECT sum(g)::int8 AS total FROM generate_series(1, 100) g") { try $0.int64(0, 0) }
        }
        #expect(total == 5050)
        let rolledBack = await #expect(throws: StoreError.self) {
            try await pool.transaction { connection in
                try await connection.query("SELECT 1 / (random() * 0)::int AS value") { result in result.count }
            }
        }
        #expect(rolledBack?.sqlState == "22012")
        let after = try await pool.withConnection { try await $0.query("SELECT 7 AS value") { try $0.int64(0, 0) } }
        #expect(after == 7)
    }
}
