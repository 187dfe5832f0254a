import Foundation
import PassionStore
import PassionTestSupport
import Testing
import PassionRPCServer

/// passion_reward_batch writes plain awards set-based; this suite holds it to the one-by-one
/// semantics of passion_reward, item by item.
@Suite("AwardBatch set-based path")
struct BatchEquivalenceTests {
    /// A deterministic generator, so a failure can be replayed.
    struct SeededGenerator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state ^ (state >> 29)
        }
    }

    struct Item {
        var user: Int  // index into the user list; -1 for a user that does not exist
        var kind: String
        var amount: Int
        var reason: String
        var key: String
        var resource: (type: String, id: UUID)?
    }

    /// What a result says, without the ids that differ between two runs (users, ledger rows,
    /// events, timestamps).
    static func normalized(_ value: Any) throws -> String {
        func strip(_ value: Any) -> Any {
            if var object = value as? [String: Any] {
                for key in ["user_id", "ledger_id", "id", "created_at", "message"] { object.removeValue(forKey: key) }
                return object.mapValues(strip)
            }
            if let array = value as? [Any] { return array.map(strip) }
            return value
        }
        return String(decoding: try JSONSerialization.data(withJSONObject: strip(value), options: [.sortedKeys]), as: UTF8.self)
    }

    static func json(_ items: [Item], users: [UUID]) throws -> String {
        let objects: [[String: Any]] = items.map { item in
            var object: [String: Any] = [
                "user_id": item.user < 0 ? UUID().uuidString.lowercased() : users[item.user].uuidString.lowercased(),
                "kind": item.kind, "amount": item.amount, "reason": item.reason, "key": item.key,
            ]
            if let resource = item.resource {
                object["resource_type"] = resource.type
                object["resource_id"] = resource.id.uuidString.lowercased()
            }
            return object
        }
        return String(decoding: try JSONSerialization.data(withJSONObject: objects), as: UTF8.self)
    }

    static func newUsers(_ pool: PostgresPool, _ count: Int) async throws -> [UUID] {
        var users: [UUID] = []
        for _ in 0..<count { users.append(try await RewardEngineTests.newUser(pool)) }
        return users
    }

    /// The same start for both sets of users: 1,200 XP (level 5, past the first achievements)
    /// and 150 coins, through passion_reward.
    static func prepare(_ pool: PostgresPool, _ users: [UUID]) async throws {
        for user in users {
            _ = try await RewardEngineTests.reward(pool, user, .init(kind: "xp", amount: 1200, key: "start-xp"))
            _ = try await RewardEngineTests.reward(pool, user, .init(kind: "coins", amount: 150, key: "start-coins"))
        }
    }

    @Test("plain awards written set-based give what one-by-one calls give: totals, level-ups, events in order, errors, replays")
    func sameAsOneByOne() async throws {
        let pool = try await TestDatabase.migratedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let setUsers = try await Self.newUsers(pool, 10)
        let loopUsers = try await Self.newUsers(pool, 10)
        try await Self.prepare(pool, setUsers)
        try await Self.prepare(pool, loopUsers)

        var random = SeededGenerator(state: 20_261_202)
        var items: [Item] = []
        let habit = UUID()
        for index in 0..<150 {
            // Users 0–5 get plain awards only: XP grants (some naming a resource), coin grants and battle wins.
            let user = Int.random(in: 0...5, using: &random)
            switch Int.random(in: 0..<4, using: &random) {
            case 0: items.append(Item(user: user, kind: "coins", amount: Int.random(in: 1...40, using: &random), reason: "battle_win", key: "b-\(index)"))
            case 1: items.append(Item(user: user, kind: "xp", amount: Int.random(in: 1...60, using: &random), reason: "grant", key: "b-\(index)",
                                      resource: ("habit", habit)))
            default: items.append(Item(user: user, kind: "xp", amount: Int.random(in: 1...60, using: &random), reason: "grant", key: "b-\(index)"))
            }
        }
        // Everything else, which goes one by one: an award reaching level 10 (and its
        // achievement), a penalty, a key used twice in the batch, a replayed key, an unknown
        // user, a key another request used, a content reason.
        items.insert(Item(user: 6, kind: "xp", amount: 3400, reason: "grant", key: "big"), at: 17)
        items.insert(Item(user: 6, kind: "coins", amount: 5, reason: "grant", key: "after-big"), at: 40)
        items.insert(Item(user: 7, kind: "xp", amount: -30, reason: "penalty", key: "penalty"), at: 3)
        items.insert(Item(user: 7, kind: "xp", amount: 30, reason: "grant", key: "after-penalty"), at: 90)
        items.insert(Item(user: 8, kind: "xp", amount: 5, reason: "grant", key: "twice"), at: 11)
        items.insert(Item(user: 8, kind: "xp", amount: 5, reason: "grant", key: "twice"), at: 70)
        items.insert(Item(user: 9, kind: "xp", amount: 1200, reason: "grant", key: "start-xp"), at: 5)
        items.insert(Item(user: 9, kind: "coins", amount: 7, reason: "grant", key: "start-xp"), at: 50)
        items.insert(Item(user: -1, kind: "xp", amount: 5, reason: "grant", key: "nobody"), at: 0)
        items.insert(Item(user: 9, kind: "xp", amount: 10, reason: "focus_session_completed", key: "content",
                          resource: ("focus_session", UUID())), at: 33)

        let setJSON = try Self.json(items, users: setUsers)
        let batch = try await pool.transaction { connection in
            try await connection.query("""
                SELECT passion_reward_batch(\(JSONB(json: setJSON))::jsonb, 'service:test', NULL, NULL)::text AS results
                """).first?.require("results", as: String.self) ?? "[]"
        }
        let setResults = try JSONSerialization.jsonObject(with: Data(batch.utf8)) as? [Any] ?? []
        #expect(setResults.count == items.count)

        // The same items one by one, in (user, position) order, for the twin users.
        let loopJSON = try Self.json(items, users: loopUsers)
        let loopItems = try JSONSerialization.jsonObject(with: Data(loopJSON.utf8)) as? [[String: Any]] ?? []
        var loopResults = [Any](repeating: NSNull(), count: items.count)
        let order = items.indices.sorted { (loopItems[$0]["user_id"] as? String ?? "", $0) < (loopItems[$1]["user_id"] as? String ?? "", $1) }
        // (Users never affect each other, so the order among users does not matter.)
        for index in order {
            let item = loopItems[index]
            let (user, kind, amount, reason) = (item["user_id"] as? String, item["kind"] as? String, item["amount"] as? Int, item["reason"] as? String)
            let (resourceType, resourceID, key) = (item["resource_type"] as? String, item["resource_id"] as? String, item["key"] as? String)
            do {
                let text = try await pool.withConnection { connection in
                    try await connection.query("""
                        SELECT passion_reward(\(user)::uuid, \(kind), \(amount), \(reason), \(resourceType), \(resourceID)::uuid, \(key),
                                              NULL, 'service:test', NULL, NULL)::text AS result
                        """).first?.require("result", as: String.self) ?? "{}"
                }
                loopResults[index] = try JSONSerialization.jsonObject(with: Data(text.utf8))
            } catch let error as StoreError {
                func orNull(_ text: String?) -> Any { text.map { $0 as Any } ?? NSNull() }
                loopResults[index] = ["error": ["sqlstate": error.sqlState, "hint": orNull(error.hint), "detail": orNull(error.detail),
                                                "constraint": orNull(error.constraint)]]
            }
        }
        for index in items.indices {
            #expect(try Self.normalized(setResults[index]) == Self.normalized(loopResults[index]), "item \(index): \(items[index])")
        }

        // The plain awards really went set-based: one INSERT wrote many ledger rows.
        let widest = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT max(n) AS n FROM (SELECT count(*) AS n FROM points_ledger WHERE user_id = ANY (string_to_array(\(setUsers.map(\.uuidString).joined(separator: ",")), ',')::uuid[])
                                         AND idempotency_key LIKE 'b-%' GROUP BY xmin, cmin) s
                """).first?.require("n", as: Int.self) ?? 0
        }
        #expect(widest > 50)
        // Each user's events carry increasing ids in the order of its items.
        for (user, _) in setUsers.enumerated() {
            let ids = items.indices.filter { items[$0].user == user }.flatMap { index -> [Int] in
                let events = (setResults[index] as? [String: Any])?["events"] as? [[String: Any]] ?? []
                let replayed = (setResults[index] as? [String: Any])?["replayed"] as? Bool ?? false
                return replayed ? [] : events.compactMap { $0["id"] as? Int }
            }
            #expect(ids == ids.sorted() && Set(ids).count == ids.count, "user \(user): \(ids)")
        }
        // Level-ups happened on the set-based path too, and the stored totals agree with the ledgers.
        #expect(items.indices.contains { index in
            items[index].user >= 0 && items[index].user <= 5
                && ((setResults[index] as? [String: Any])?["events"] as? [[String: Any]] ?? []).contains { $0["type"] as? String == "level_up" }
        })
        let problems = try await pool.withConnection { try await $0.query("SELECT * FROM passion_reconcile()") }
        #expect(problems.isEmpty)

        // A new batch that repeats one key of the first: the plain path steps back, every item
        // goes one by one, the repeated one replays and the others are written once.
        let mixed = (0..<20).map { Item(user: $0 % 6, kind: "xp", amount: 3, reason: "grant", key: "m-\($0)") }
            + [items[items.firstIndex { $0.key == "b-7" } ?? 0]]
        let mixedJSON = try Self.json(mixed, users: setUsers)
        let mixedText = try await pool.transaction { connection in
            try await connection.query("""
                SELECT passion_reward_batch(\(JSONB(json: mixedJSON))::jsonb, 'service:test', NULL, NULL)::text AS results
                """).first?.require("results", as: String.self) ?? "[]"
        }
        let mixedResults = try JSONSerialization.jsonObject(with: Data(mixedText.utf8)) as? [[String: Any]] ?? []
        let firstOfRepeated = setResults[items.firstIndex { $0.key == "b-7" } ?? 0] as? [String: Any]
        #expect(mixedResults.last?["replayed"] as? Bool == true && mixedResults.last?["ledger_id"] as? Int == firstOfRepeated?["ledger_id"] as? Int)
        #expect(mixedResults.dropLast().allSatisfy { $0["replayed"] as? Bool == false && $0["error"] == nil })
        let mixedWidest = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT max(n) AS n FROM (SELECT count(*) AS n FROM points_ledger WHERE idempotency_key LIKE 'm-%' GROUP BY xmin, cmin) s
                """).first?.require("n", as: Int.self) ?? 0
        }
        #expect(mixedWidest == 1)

        // An item missing its kind beside a plain one of the same user: it fails alone, and
        // leaves no key, ledger row, audit row or event behind.
        let user = setUsers[0].uuidString.lowercased()
        let partial = #"[{"user_id": "\#(user)", "amount": 5, "reason": "grant", "key": "no-kind"}, "#
            + #"{"user_id": "\#(user)", "kind": "xp", "amount": 5, "reason": "grant", "key": "with-kind"}]"#
        let partialText = try await pool.transaction { connection in
            try await connection.query("""
                SELECT passion_reward_batch(\(JSONB(json: partial))::jsonb, 'service:test', NULL, NULL)::text AS results
                """).first?.require("results", as: String.self) ?? "[]"
        }
        let partialResults = try JSONSerialization.jsonObject(with: Data(partialText.utf8)) as? [[String: Any]] ?? []
        #expect((partialResults.first?["error"] as? [String: Any])?["sqlstate"] as? String == "P0A19")
        #expect(partialResults.last?["replayed"] as? Bool == false)
        let traces = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT (SELECT count(*) FROM idempotency_keys WHERE key = 'no-kind')
                     + (SELECT count(*) FROM audit_logs WHERE details ->> 'idempotency_key' = 'no-kind') AS n
                """).first?.require("n", as: Int.self) ?? -1
        }
        #expect(traces == 0)

        // A retried batch replays every item with the first results.
        let again = try await pool.transaction { connection in
            try await connection.query("""
                SELECT passion_reward_batch(\(JSONB(json: setJSON))::jsonb, 'service:test', NULL, NULL)::text AS results
                """).first?.require("results", as: String.self) ?? "[]"
        }
        let replays = try JSONSerialization.jsonObject(with: Data(again.utf8)) as? [[String: Any]] ?? []
        for (index, replay) in replays.enumerated() {
            guard let first = setResults[index] as? [String: Any], first["error"] == nil else { continue }
            #expect(replay["replayed"] as? Bool == true, "item \(index)")
            #expect(replay["ledger_id"] as? Int == first["ledger_id"] as? Int, "item \(index)")
        }
    }
}
