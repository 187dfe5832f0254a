import Foundation
import PassionJSON
import PassionRPC
import PassionStore
import PassionTestSupport
import Testing

/// The typed store boundary: records read from real result rows and from the documents the SQL
/// functions return, NULLs as nil, and every bad value refused naming its field.
@Suite("Records from the database")
struct RecordDecodingTests {
    static func user(_ connection: PostgresConnection) async throws -> UUID {
        try one(try await connection.query("INSERT INTO users (email) VALUES (\("r-\(UUID().postgresText)@example.com")) RETURNING id"))
            .require("id", as: UUID.self)
    }

    static func one(_ rows: Rows) throws -> Row { try #require(rows.first) }

    @Test("a goal reads the same from its columns as from the JSON document a function returns, NULLs as nil")
    func goalFromRowAndDocument() async throws {
        let pool = try await TestDatabase.migratedPool(size: 1)
        defer { Task { await pool.shutdown() } }
        try await pool.withConnection { connection in
            let user = try await Self.user(connection)
            let bare = try Self.one(try await connection.query("""
                INSERT INTO goals (user_id, title) VALUES (\(user), 'bare') RETURNING id
                """)).require("id", as: UUID.self)
            try await connection.query("""
                INSERT INTO goals (user_id, title, description, category, priority, target_date, metadata)
                VALUES (\(user), 'full', 'd', 'health', 2, '2027-01-31', '{"b": [1, 2.5, "x"], "a": {"n": null}}')
                """)
            let rows = try await connection.query("SELECT \(unsafeSQL: GoalRecord.columns) FROM goals g WHERE g.user_id = \(user) ORDER BY g.title")
            let documents = try await connection.query("""
                SELECT (to_jsonb(g) || jsonb_build_object('habit_count', 0))::text AS result FROM goals g WHERE g.user_id = \(user) ORDER BY g.title
                """)
            let fromRows = try rows.map { try GoalRecord(fields: $0) }
            let fromDocuments = try documents.map { try GoalRecord(fields: DocumentFields(text: $0.require("result", as: String.self))) }
            #expect(fromRows.map(\.title) == ["bare", "full"])
            let (plain, full) = (fromRows[0], fromRows[1])
            #expect(plain.id == bare && plain.description == nil && plain.category == nil && plain.priority == nil)
            #expect(plain.targetDate == nil && plain.completedAt == nil && plain.metadata.json == "{}" && plain.habitCount == 0)
            #expect(full.priority == 2 && full.targetDate == LocalDate(year: 2027, month: 1, day: 31) && full.category == "health")
            // The same values whichever form they came in, timestamps to the microsecond.
            for (row, document) in zip(fromRows, fromDocuments) {
                var document = document
                #expect(try StrictJSON.parse(document.metadata.json.utf8) == StrictJSON.parse(row.metadata.json.utf8))
                document.metadata = row.metadata
                #expect(document == row)
            }
        }
    }

    @Test("a reward's document: progress, ledger id, events with their payloads; a batch's failed item is a StoreError")
    func rewardDocuments() async throws {
        let pool = try await TestDatabase.migratedPool(size: 1)
        defer { Task { await pool.shutdown() } }
        try await pool.withConnection { connection in
            let user = try await Self.user(connection)
            let text = try Self.one(try await connection.query("""
                SELECT passion_reward(\(user), 'xp', 250, 'grant', NULL, NULL, 'k1', NULL, 'service:test', NULL, NULL)::text AS result
                """)).require("result", as: String.self)
            let reward = try RewardRecord(fields: DocumentFields(text: text))
            #expect(reward.progress?.userID == user && reward.replayed == false)
            // 250 and whatever the achievements it unlocked paid.
            #expect(reward.progress.map { $0.totalXP >= 250 } == true)
            #expect(reward.progress.map { $0.levelFloorXP <= $0.totalXP && $0.nextLevelXP > $0.totalXP } == true)
            #expect(reward.ledgerID != nil && reward.events.first?.type == "xp_awarded")
            #expect(reward.events.first?.payload.amount == 250 && reward.events.first?.payload.reason == "grant")
            #expect(reward.events.first?.payload.ledgerID == reward.ledgerID && reward.events.allSatisfy { $0.userID == user })
            #expect(reward.events.contains { $0.type == "level_up" && $0.payload.toLevel == reward.progress?.level }
                        == (reward.progress?.level ?? 1 > 1))

            // The same events read back from the table's columns.
            let stored = try await connection.query("SELECT \(unsafeSQL: EventRecord.columns) FROM progress_events WHERE user_id = \(user) ORDER BY id")
            #expect(try stored.map { try EventRecord(fields: $0) } == reward.events)

            let batch = try Self.one(try await connection.query("""
                SELECT passion_reward_batch(\(JSONB(json: """
                    [{"user_id": "\(user.postgresText)", "kind": "xp", "amount": 5, "reason": "grant", "key": "b1"},
                     {"user_id": "\(user.postgresText)", "kind": "xp", "amount": -100000, "reason": "penalty", "key": "b2"}]
                    """))::jsonb, 'service:test', NULL, NULL)::text AS results
                """)).require("results", as: String.self)
            let outcomes = try BatchOutcome.outcomes(document: batch)
            guard outcomes.count == 2, case .rewarded(let first) = outcomes[0], case .failed(let error) = outcomes[1] else {
                Issue.record("unexpected outcomes \(outcomes)")
                return
            }
            let before = reward.progress?.totalXP ?? 0
            #expect((first.progress?.totalXP ?? 0) >= before + 5 && error.hint == "INSUFFICIENT_XP")
            #expect(error.rpcError.details?.fields["total_xp"] == first.progress.map { String($0.totalXP) })
        }
    }

    @Test("NULL where a value is required, a value of another type, a missing column: refused, naming the field")
    func badRows() async throws {
        let pool = try await TestDatabase.migratedPool(size: 1)
        defer { Task { await pool.shutdown() } }
        try await pool.withConnection { connection in
            let good = """
                '00000000-0000-0000-0000-000000000001'::uuid AS quest_id, 3 AS progress, 5 AS target
                """
            let row = try Self.one(try await connection.query("SELECT \(unsafeSQL: good)"))
            #expect(try QuestProgressRecord(fields: row).target == 5)
            let cases: [(sql: String, field: String, problem: String)] = [
                ("NULL::uuid AS quest_id, 3 AS progress, 5 AS target", "quest_id", "is NULL or missing"),
                ("'not-a-uuid' AS quest_id, 3 AS progress, 5 AS target", "quest_id", "does not read as UUID"),
                ("'00000000-0000-0000-0000-000000000001'::uuid AS quest_id, 3.5 AS progress, 5 AS target", "progress", "does not read as Int32"),
                ("'00000000-0000-0000-0000-000000000001'::uuid AS quest_id, 9999999999 AS progress, 5 AS target", "progress", "does not read as Int32"),
                ("'00000000-0000-0000-0000-000000000001'::uuid AS quest_id, 3 AS progress", "target", "the result has no such column"),
            ]
            for bad in cases {
                let row = try Self.one(try await connection.query("SELECT \(unsafeSQL: bad.sql)"))
                #expect(throws: RecordDecodingError(field: bad.field, problem: bad.problem), "\(bad.sql)") {
                    try QuestProgressRecord(fields: row)
                }
            }
            // A jsonb column that should hold an object.
            let criteria = try Self.one(try await connection.query("SELECT '[1]'::jsonb AS criteria"))
            #expect(throws: RecordDecodingError(field: "criteria", problem: "is not a JSON object")) {
                try criteria.record("criteria", as: QuestRecord.Criteria.self)
            }
        }
    }

    @Test("rows are read in place from libpq's result: after their connection is gone, by exact column name, NULL as nil")
    func rowsOutliveTheirConnection() async throws {
        let pool = try await TestDatabase.migratedPool(size: 1)
        let rows = try await pool.withConnection { connection in
            try await connection.query(#"""
                SELECT n, 'v' || n AS "Label", CASE WHEN n = 2 THEN NULL ELSE n * 10 END AS tens FROM generate_series(1, 3) n
                """#)
        }
        await pool.shutdown()
        #expect(rows.count == 3 && rows.columns == ["n", "Label", "tens"] && rows.affected == 3)
        #expect(try rows.map { try $0.require("n", as: Int.self) } == [1, 2, 3])
        #expect(try rows.map { try $0.decode("tens", as: Int.self) } == [10, nil, 30])
        #expect(try rows.first?.require("Label", as: String.self) == "v1")
        // Exactly as named: PostgreSQL folds the case of names in SQL text, not of a name we look up.
        for folded in ["label", "N"] {
            let error = #expect(throws: PostgresDecodingError.self) { try rows.first?.decode(folded, as: String.self) }
            #expect(error?.type == "column" && error?.text == folded)
        }
    }

    @Test("columns read in any order, backwards, repeated and across rows find their own values; a missing one is refused wherever the lookup starts")
    func columnsInAnyOrder() async throws {
        let pool = try await TestDatabase.migratedPool(size: 1)
        let rows = try await pool.withConnection { connection in
            try await connection.query("SELECT n AS a, n * 10 AS b, n * 100 AS c, n * 1000 AS d FROM generate_series(1, 3) n")
        }
        let orders = [["a", "b", "c", "d"], ["d", "c", "b", "a"], ["c", "a", "d", "b"], ["b", "b", "d", "d", "a"]]
        for order in orders {
            for (index, row) in rows.enumerated() {
                let n = index + 1
                let read = try order.map { try row.require($0, as: Int.self) }
                let expected = order.map { ["a": 1, "b": 10, "c": 100, "d": 1000][$0, default: 0] * n }
                #expect(read == expected, "\(order)")
            }
        }
        // After every column, after the last one, after none: the same refusal.
        for before in [[], ["a"], ["d"], ["b", "c"]] {
            let row = try #require(rows.first)
            for column in before { _ = try row.require(column, as: Int.self) }
            let error = #expect(throws: PostgresDecodingError.self) { try row.decode("e", as: Int.self) }
            #expect(error?.type == "column" && error?.text == "e")
        }
        // No columns at all.
        let none = try await pool.withConnection { connection in try await connection.query("SELECT FROM generate_series(1, 1)") }
        await pool.shutdown()
        let error = #expect(throws: PostgresDecodingError.self) { try none.first?.decode("a", as: Int.self) }
        #expect(error?.type == "column")
    }

    @Test("documents: wrong JSON types, fractions, out of range, nested paths, and text that is not JSON are refused")
    func badDocuments() throws {
        func progress(_ json: String) throws -> QuestProgressRecord { try QuestProgressRecord(fields: DocumentFields(text: json)) }
        let id = #""quest_id": "00000000-0000-0000-0000-000000000001""#
        #expect(try progress("{\(id), \"progress\": 3, \"target\": 5}").progress == 3)
        let cases: [(json: String, field: String, problem: String)] = [
            ("{\(id), \"progress\": \"3\", \"target\": 5}", "progress", "does not read as Int32"),
            ("{\(id), \"progress\": 3.5, \"target\": 5}", "progress", "does not read as Int32"),
            ("{\(id), \"progress\": 3e10, \"target\": 5}", "progress", "does not read as Int32"),
            ("{\(id), \"progress\": true, \"target\": 5}", "progress", "does not read as Int32"),
            ("{\(id), \"progress\": 3, \"target\": null}", "target", "is NULL or missing"),
            ("{\(id), \"progress\": 3}", "target", "is NULL or missing"),
            ("{\"quest_id\": 7, \"progress\": 3, \"target\": 5}", "quest_id", "does not read as UUID"),
            ("[1, 2]", "result", "is not a JSON object"),
        ]
        for bad in cases {
            #expect(throws: RecordDecodingError(field: bad.field, problem: bad.problem), "\(bad.json)") { try progress(bad.json) }
        }
        #expect(throws: RecordDecodingError.self) { try progress("{\(id), ") }
        // An error deep in a document names the whole path.
        let reward = """
            {"user_id": "00000000-0000-0000-0000-000000000001", "total_xp": 1, "level": 1, "level_floor_xp": 0, "next_level_xp": 100,
             "total_coins": 0, "coins_earned": 0, "achievements_unlocked": 0,
             "events": [{"id": 1, "user_id": "00000000-0000-0000-0000-000000000001", "type": "xp_awarded",
                         "created_at": "2026-12-03T05:00:00.123456+00:00", "payload": {"amount": "lots"}}]}
            """
        #expect(throws: RecordDecodingError(field: "events[0].payload.amount", problem: "does not read as Int64")) {
            try RewardRecord(fields: DocumentFields(text: reward))
        }
        #expect(throws: RecordDecodingError(field: "results", problem: "is not a JSON array")) { try BatchOutcome.outcomes(document: "{}") }
        // A replayed content call that paid nothing says only that it was replayed.
        let replay = try RewardRecord(fields: DocumentFields(text: #"{"replayed": true}"#))
        #expect(replay.progress == nil && replay.replayed && replay.events.isEmpty && replay.ledgerID == nil)
        let event = try EventRecord(notification: """
            {"id": 9, "user_id": "00000000-0000-0000-0000-000000000002", "type": "level_up", "payload": {"from_level": 1, "to_level": 2},
             "created_at": "2026-12-03T05:00:00+00:00"}
            """)
        #expect(event.id == 9 && event.payload.fromLevel == 1 && event.payload.toLevel == 2 && event.payload.amount == nil)
    }

    @Test("JSON written back from a parsed value: compact, keys in order, whole numbers without a fraction, strings escaped")
    func jsonText() throws {
        let value = try StrictJSON.parse(#"{"b": [1, 2.5, -3e2, true, null], "a": "q\"\n\u0001", "c": {}}"#.utf8)
        #expect(value.text == #"{"a":"q\"\n\u0001","b":[1,2.5,-300,true,null],"c":{}}"#)
        #expect(try StrictJSON.parse(value.text.utf8) == value)
        #expect(QuestRecord.Criteria(habitID: UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)), metric: "completions").json.json
                    == #"{"habit_id":"00000000-0000-0000-0000-000000000001","metric":"completions"}"#)
    }
}
