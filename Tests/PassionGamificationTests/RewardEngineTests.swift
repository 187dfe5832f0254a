import Foundation
import PassionRPCServer
import PassionServices
import PassionStore
import PassionTestSupport
import Testing

/// The reward engine in the database (passion_reward), called as the services call it: one
/// statement, one round trip.
@Suite("Reward engine (PL/pgSQL)")
struct RewardEngineTests {
    static func newUser(_ pool: PostgresPool) async throws -> UUID {
        try await pool.withConnection { connection in
            try await connection.query("INSERT INTO users (email) VALUES (\("u-\(UUID().uuidString.lowercased())@example.com")) RETURNING id")
                .first?.require("id", as: UUID.self) ?? UUID()
        }
    }

    struct Reward: Sendable {
        var kind = "xp"
        var amount = 10
        var reason = "grant"
        var key = UUID().uuidString
        var refundOf: Int64?
    }

    /// One call of passion_reward; the result as a JSON object.
    static func reward(_ pool: PostgresPool, _ user: UUID, _ reward: Reward) async throws -> [String: Any] {
        let text = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT passion_reward(\(user), \(reward.kind), \(reward.amount), \(reward.reason), NULL, NULL, \(reward.key),
                                      \(reward.refundOf), 'service:test', NULL, NULL)::text AS result
                """).first?.require("result", as: String.self) ?? "{}"
        }
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
    }

    static func rpcError(_ body: () async throws -> Void) async -> RPCError? {
        do {
            try await body()
            return nil
        } catch {
            return RPCError(converting: error)
        }
    }

    @Test("the level curve is the same function in SQL and Swift for levels 1 to 200, at and around each threshold")
    func levelCurve() async throws {
        let pool = try await TestDatabase.migratedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        var samples: [Int64] = [-5, 0, 1, 49, 50, 99]
        for level in 1...201 {
            let start = LevelCurve.xp(forLevel: level)
            samples += [start - 1, start, start + 1]
        }
        samples += [Int64(Int32.max), 9_000_000_000_000]
        let list = samples.map(String.init).joined(separator: ",")
        let rows = try await pool.withConnection { connection in
            try await connection.query("SELECT x, passion_level_for_xp(x) AS level FROM unnest(string_to_array(\(list), ',')::bigint[]) AS x")
        }
        var compared = 0
        for row in rows {
            let xp = try row.require("x", as: Int64.self)
            #expect(try row.require("level", as: Int.self) == LevelCurve.level(forXP: xp), "xp \(xp)")
            compared += 1
        }
        #expect(compared == samples.count)
        for level in 1...200 {
            #expect(LevelCurve.level(forXP: LevelCurve.xp(forLevel: level)) == level)
            #expect(LevelCurve.level(forXP: LevelCurve.xp(forLevel: level + 1) - 1) == level)
        }
    }

    @Test("an award returns totals and events in order; a retry of its key replays it; a changed request with it is refused")
    func awardAndReplay() async throws {
        let pool = try await TestDatabase.migratedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let user = try await Self.newUser(pool)
        let award = Reward(kind: "xp", amount: 1_000, key: "award-1")
        let first = try await Self.reward(pool, user, award)
        #expect(first["replayed"] as? Bool == false)
        let events = first["events"] as? [[String: Any]] ?? []
        let types = events.map { $0["type"] as? String ?? "" }
        #expect(types.first == "xp_awarded")
        // 1,000 XP: level 5 at once (one event), then first_steps, xp_500 and level_5 unlock.
        #expect(types.dropFirst().first == "level_up")
        let jump = (events[1]["payload"] as? [String: Any]) ?? [:]
        #expect(jump["from_level"] as? Int == 1 && jump["to_level"] as? Int == 5)
        let unlocked = Set(events.filter { $0["type"] as? String == "achievement_unlocked" }
            .compactMap { ($0["payload"] as? [String: Any])?["slug"] as? String })
        #expect(unlocked == ["first_steps", "xp_500", "level_5"])
        // Rewards went through the ledgers: 1,000 + 10 + 25 + 50 XP; 5 + 10 + 20 coins.
        #expect(first["total_xp"] as? Int == 1_085)
        #expect(first["total_coins"] as? Int == 35)
        #expect(first["level"] as? Int == LevelCurve.level(forXP: 1_085))
        #expect(first["achievements_unlocked"] as? Int == 3)
        let ids = events.compactMap { $0["id"] as? Int }
        #expect(ids == ids.sorted())

        let again = try await Self.reward(pool, user, award)
        #expect(again["replayed"] as? Bool == true)
        #expect(again["ledger_id"] as? Int == first["ledger_id"] as? Int)
        #expect(again["total_xp"] as? Int == 1_085)
        let ledgerRows = try await pool.withConnection { try await $0.query("SELECT count(*) AS n FROM points_ledger WHERE user_id = \(user)").first?.require("n", as: Int.self) }
        #expect(ledgerRows == 4)

        var changed = award
        changed.amount = 5
        let error = await Self.rpcError { _ = try await Self.reward(pool, user, changed) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.details?.reason == "IDEMPOTENCY_KEY_REUSED")
    }

    @Test("content rewards measure every rule; other rewards only XP, level and coins (content needs Evaluate)")
    func ruleScope() async throws {
        let pool = try await TestDatabase.migratedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let user = try await Self.newUser(pool)
        try await pool.withConnection { connection in
            try await connection.query("INSERT INTO goals (user_id, title, category, status) VALUES (\(user), 'Done', 'work', 'completed')")
        }
        func slugs(_ result: [String: Any]) -> Set<String> {
            Set((result["events"] as? [[String: Any]] ?? []).compactMap { ($0["payload"] as? [String: Any])?["slug"] as? String })
        }
        let grant = try await Self.reward(pool, user, Reward(kind: "xp", amount: 5, reason: "grant", key: "grant"))
        #expect(!slugs(grant).contains("goal_1"))
        let content = try await Self.reward(pool, user, Reward(kind: "xp", amount: 5, reason: "goal_completed", key: "goal"))
        #expect(slugs(content).contains("goal_1"))
    }

    @Test("spend over balance, refund twice, refund more than spent, another user's spend, unknown user: clear errors, nothing changed")
    func refusals() async throws {
        let pool = try await TestDatabase.migratedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let user = try await Self.newUser(pool)
        let other = try await Self.newUser(pool)
        _ = try await Self.reward(pool, user, Reward(kind: "coins", amount: 40, key: "earn"))
        func state() async throws -> String {
            try await pool.withConnection { connection in
                try await connection.query("""
                    SELECT (SELECT count(*) FROM coins_ledger) || '/' || (SELECT count(*) FROM points_ledger) || '/'
                        || (SELECT string_agg(user_id::text || total_coins || '/' || total_xp, ',' ORDER BY user_id) FROM user_progress)
                        || '/' || (SELECT count(*) FROM progress_events) AS s
                    """).first?.require("s", as: String.self) ?? ""
            }
        }
        let before = try await state()
        let over = await Self.rpcError { _ = try await Self.reward(pool, user, Reward(kind: "spend", amount: 100, reason: "shop_purchase")) }
        #expect(over?.code == .failedPrecondition)
        #expect(over?.details?.reason == "INSUFFICIENT_FUNDS")
        #expect(over?.details?.fields["balance"] == "40")
        #expect(over?.details?.fields["price"] == "100")
        #expect(try await state() == before)

        let spend = try await Self.reward(pool, user, Reward(kind: "spend", amount: 30, reason: "shop_purchase"))
        let spendID = Int64(spend["ledger_id"] as? Int ?? 0)
        #expect(spend["total_coins"] as? Int == 10)
        let afterSpend = try await state()
        let tooMuch = await Self.rpcError {
            _ = try await Self.reward(pool, user, Reward(kind: "refund", amount: 31, reason: "shop_purchase", refundOf: spendID))
        }
        #expect(tooMuch?.code == .failedPrecondition && tooMuch?.details?.reason == "REFUND_EXCEEDS_SPEND")
        let notMine = await Self.rpcError {
            _ = try await Self.reward(pool, other, Reward(kind: "refund", amount: 30, reason: "shop_purchase", refundOf: spendID))
        }
        #expect(notMine?.code == .notFound && notMine?.details?.reason == "SPEND_NOT_FOUND")
        #expect(try await state() == afterSpend)
        let refund = try await Self.reward(pool, user, Reward(kind: "refund", amount: 30, reason: "shop_purchase", refundOf: spendID))
        #expect(refund["total_coins"] as? Int == 40)
        let twice = await Self.rpcError {
            _ = try await Self.reward(pool, user, Reward(kind: "refund", amount: 1, reason: "shop_purchase", refundOf: spendID))
        }
        #expect(twice?.code == .alreadyExists && twice?.details?.reason == "ALREADY_REFUNDED")
        let nobody = await Self.rpcError { _ = try await Self.reward(pool, UUID(), Reward()) }
        #expect(nobody?.code == .notFound && nobody?.details?.reason == "USER_NOT_FOUND")
    }
}

@Suite("Reward engine under concurrency")
struct RewardConcurrencyTests {
    /// What one of two simultaneous calls with the same key got.
    struct Outcome: Sendable {
        var ledgerID: Int64
        var replayed: Bool
    }

    /// An acknowledged call: which ledger row it wrote.
    struct Acknowledged: Sendable {
        var user: UUID
        var key: String
        var kind: String
        var ledgerID: Int64
    }

    @Test("32 callers, 10,000 random awards, spends and refunds with retried keys: nothing lost, nothing doubled")
    func storm() async throws {
        let pool = try await TestDatabase.migratedPool(size: 32)
        defer { Task { await pool.shutdown() } }
        var users: [UUID] = []
        for _ in 0..<16 { users.append(try await RewardEngineTests.newUser(pool)) }
        let everyone = users
        let callers = 32
        let callsPerCaller = 10_000 / callers + 1
        let acknowledged = try await withThrowingTaskGroup(of: [Acknowledged].self) { group in
            for caller in 0..<callers {
                group.addTask {
                    var generator = SystemRandomNumberGenerator()
                    var done: [Acknowledged] = []
                    var spends: [(UUID, Int64, Int)] = []
                    for call in 0..<callsPerCaller {
                        let user = everyone.randomElement(using: &generator) ?? everyone[0]
                        var reward = RewardEngineTests.Reward(key: "c\(caller)-\(call)")
                        switch Int.random(in: 0..<10, using: &generator) {
                        case 0..<4: reward.kind = "xp"; reward.amount = Int.random(in: 1...300, using: &generator)
                        case 4..<7: reward.kind = "coins"; reward.amount = Int.random(in: 1...50, using: &generator)
                        case 7..<9: reward.kind = "spend"; reward.reason = "shop_purchase"; reward.amount = Int.random(in: 1...80, using: &generator)
                        default:
                            guard let (spender, spendID, spent) = spends.popLast() else { continue }
                            reward.kind = "refund"; reward.reason = "shop_purchase"; reward.refundOf = spendID
                            reward.amount = Int.random(in: 1...spent, using: &generator)
                            let result = try await RewardEngineTests.reward(pool, spender, reward)
                            done.append(Acknowledged(user: spender, key: reward.key, kind: reward.kind, ledgerID: Int64(result["ledger_id"] as? Int ?? -1)))
                            continue
                        }
                        do {
                            let ledgerID: Int64
                            if Int.random(in: 0..<10, using: &generator) == 0 {
                                // The same key twice at once (a client that retried too early): one
                                // call writes, the other waits for its commit and replays it. If the
                                // first is refused (over the balance), the second runs anew and may
                                // succeed, since other callers change the balance meanwhile.
                                let same = reward
                                let calls = (0..<2).map { _ in
                                    Task { () throws -> Outcome in
                                        let result = try await RewardEngineTests.reward(pool, user, same)
                                        return Outcome(ledgerID: Int64(result["ledger_id"] as? Int ?? -1), replayed: result["replayed"] as? Bool == true)
                                    }
                                }
                                var outcomes: [Outcome] = []
                                for call in calls {
                                    do {
                                        outcomes.append(try await call.value)
                                    } catch let error as StoreError where error.sqlState == "P0A10" {
                                        continue
                                    }
                                }
                                guard let written = outcomes.first else { continue }
                                #expect(Set(outcomes.map(\.ledgerID)).count == 1)
                                #expect(outcomes.filter { !$0.replayed }.count == 1)
                                ledgerID = written.ledgerID
                            } else {
                                let result = try await RewardEngineTests.reward(pool, user, reward)
                                ledgerID = Int64(result["ledger_id"] as? Int ?? -1)
                            }
                            // A client that lost the reply retries the same key: same answer, no second row.
                            if Bool.random(using: &generator) {
                                let retry = try await RewardEngineTests.reward(pool, user, reward)
                                #expect(retry["replayed"] as? Bool == true)
                                #expect(Int64(retry["ledger_id"] as? Int ?? -2) == ledgerID)
                            }
                            done.append(Acknowledged(user: user, key: reward.key, kind: reward.kind, ledgerID: ledgerID))
                            if reward.kind == "spend" { spends.append((user, ledgerID, reward.amount)) }
                        } catch let error as StoreError where error.sqlState == "P0A10" {
                            continue  // over the balance: refused, nothing written
                        }
                    }
                    return done
                }
            }
            var all: [Acknowledged] = []
            for try await part in group { all += part }
            return all
        }
        #expect(acknowledged.count > 5_000)
        let problems = try await pool.withConnection { try await $0.query("SELECT * FROM passion_reconcile()") }
        #expect(problems.isEmpty, "reconcile found \(problems.count) differences")
        let duplicates = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT (SELECT count(*) FROM (SELECT user_id, idempotency_key FROM points_ledger WHERE idempotency_key IS NOT NULL
                                              GROUP BY 1, 2 HAVING count(*) > 1) d)
                     + (SELECT count(*) FROM (SELECT user_id, idempotency_key FROM coins_ledger WHERE idempotency_key IS NOT NULL
                                              GROUP BY 1, 2 HAVING count(*) > 1) d) AS n
                """).first?.require("n", as: Int.self)
        }
        #expect(duplicates == 0)
        let negative = try await pool.withConnection { try await $0.query("SELECT count(*) AS n FROM user_progress WHERE total_coins < 0").first?.require("n", as: Int.self) }
        #expect(negative == 0)
        // Every acknowledged call is in its ledger exactly once, under its key, for its user.
        let keyed = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT id, user_id, idempotency_key FROM points_ledger WHERE idempotency_key NOT LIKE '$ach:%'
                UNION ALL
                SELECT id, user_id, idempotency_key FROM coins_ledger WHERE idempotency_key NOT LIKE '$ach:%'
                """)
        }
        var rows: [String: Int] = [:]
        for row in keyed {
            let key = "\(try row.require("user_id", as: UUID.self))|\(try row.require("idempotency_key", as: String.self))|\(try row.require("id", as: Int64.self))"
            rows[key, default: 0] += 1
        }
        let told = Set(acknowledged.map { "\($0.user)|\($0.key)|\($0.ledgerID)" })
        let missing = acknowledged.filter { rows["\($0.user)|\($0.key)|\($0.ledgerID)"] != 1 }
        #expect(missing.count == 0, "not in the ledger exactly once: \(missing.prefix(5))")
        #expect(told.count == acknowledged.count, "a call was acknowledged twice")
        let unknown = rows.keys.filter { !told.contains($0) }
        #expect(unknown.count == 0, "ledger rows no caller was told about: \(unknown.sorted().prefix(5))")
    }
}
