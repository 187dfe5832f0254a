import Foundation
import PassionServerAPI
import PassionClient
import PassionRPCServer
import PassionStore
import PassionTestSupport
import Testing

@Suite("AwardBatch and Leaderboard")
struct BatchAndLeaderboardTests {
    static let writer = ServiceHarness.service("progress")

    static func xp(_ user: String, _ amount: Int32, key: String, reason: String = "grant") -> BatchAward {
        BatchAward.with {
            $0.userID = user
            $0.kind = .xp
            $0.amount = amount
            $0.reason = reason
            $0.idempotencyKey = key
        }
    }

    @Test("a batch for many users: each item its own result, bad items fail alone, a retried batch writes nothing twice")
    func batch() async throws {
        try await ServiceHarness.with { harness in
            let a = try await harness.signIn()
            let b = try await harness.signIn()
            let awards = [
                Self.xp(a.id, 50, key: "job-1"),
                Self.xp(b.id, 70, key: "job-2"),
                Self.xp(a.id, 0, key: "job-3"),  // invalid: 0
                Self.xp(UUID().uuidString, 10, key: "job-4"),  // unknown user
                BatchAward.with {
                    $0.userID = b.id
                    $0.kind = .coins
                    $0.amount = 9
                    $0.reason = "battle_win"
                    $0.idempotencyKey = "job-5"
                },
                Self.xp(a.id, 25, key: "job-6"),
            ]
            let response = try await harness.connection.progress.awardBatch(options: Self.writer) { $0.awards = awards }
            #expect(response.results.count == awards.count)
            func result(_ index: Int) -> RewardResult? {
                if case .result(let result)? = response.results[index].outcome { return result }
                return nil
            }
            func failure(_ index: Int) -> ItemError? {
                if case .error(let error)? = response.results[index].outcome { return error }
                return nil
            }
            #expect(result(0)?.events.first?.amount == 50)
            #expect(result(1)?.progress.userID == b.id)
            #expect(failure(2)?.code == Int32(StatusCode.invalidArgument.rawValue))
            #expect(failure(2)?.fields["field"] == "awards[2].amount")
            #expect(failure(3)?.code == Int32(StatusCode.notFound.rawValue) && failure(3)?.reason == "USER_NOT_FOUND")
            let coins = result(4)?.progress.totalCoins
            #expect(coins == 14, "the 9 coins and first_steps' 5")
            // Items of one user apply in order: job-6 sees job-1's total (and first_steps' 10 XP).
            let xp = result(5)?.progress.totalXp
            #expect(xp == 85)

            let retried = try await harness.connection.progress.awardBatch(options: Self.writer) { $0.awards = awards }
            for index in [0, 1, 4, 5] {
                if case .result(let again)? = retried.results[index].outcome {
                    #expect(again.replayed && again.ledgerID == result(index)?.ledgerID)
                } else {
                    Issue.record("item \(index) failed on retry")
                }
            }
            let problems = try await harness.query("SELECT * FROM passion_reconcile()")
            #expect(problems.isEmpty)
            // Keys may hold any printable ASCII, quotes and backslashes included.
            let odd = #"job-"7"\x"#
            let quoted = try await harness.connection.progress.awardBatch(options: Self.writer) {
                $0.awards = [Self.xp(a.id, 5, key: odd), Self.xp(b.id, 5, key: odd)]
            }
            #expect(quoted.results.allSatisfy { if case .result? = $0.outcome { true } else { false } })
            #expect(try await harness.count("SELECT count(*) AS n FROM points_ledger WHERE idempotency_key = \(odd)") == 2)
            let oversize = await expectRPCError(.invalidArgument) {
                try await harness.connection.progress.awardBatch(options: Self.writer) {
                    $0.awards = (0..<1001).map { Self.xp(a.id, 1, key: "big-\($0)") }
                }
            }
            #expect(oversize?.details?.fields["field"] == "awards")
        }
    }

    @Test("leaderboard: all-time and weekly ranks, shared ranks, the caller's neighbours, a caller without XP")
    func leaderboard() async throws {
        try await ServiceHarness.with { harness in
            var users: [ServiceHarness.SignedIn] = []
            for _ in 0..<6 { users.append(try await harness.signIn()) }
            // XP 600, 500, 500, 300, 100 (plus achievement rewards); the sixth has none.
            let amounts: [Int32] = [600, 500, 500, 300, 100]
            _ = try await harness.connection.progress.awardBatch(options: Self.writer) {
                $0.awards = zip(users, amounts).map { Self.xp($0.id, $1, key: "seed") }
            }
            // Old XP for the fourth user does not count this week: its ledger rows and its weekly
            // total move back 8 days, behind the triggers' back, and the boards are told.
            let old = users[3].id
            try await harness.pool.withConnection { connection in
                try await connection.execute("""
                    ALTER TABLE points_ledger DISABLE TRIGGER points_ledger_append_only;
                    UPDATE points_ledger SET created_at = now() - interval '8 days' WHERE user_id = '\(old)';
                    ALTER TABLE points_ledger ENABLE TRIGGER points_ledger_append_only;
                    UPDATE user_xp_weeks SET week_start = passion_week_start(now() - interval '8 days') WHERE user_id = '\(old)';
                    SELECT passion_notify_scores(ARRAY['\(old)']::uuid[]);
                    """)
            }
            try await harness.settleLeaderboards()
            let board = try await harness.connection.progress.leaderboard(options: .session(users[3].token)) {
                $0.limit = 3
                $0.neighbours = 1
            }
            #expect(board.top.map(\.rank) == [1, 2, 2])
            #expect(board.top.map(\.xp) == [635, 535, 535])  // with first_steps (10) and xp_500 (25)
            #expect(board.me.userID == users[3].id && board.me.rank == 4 && board.me.xp == 310)
            #expect(board.aroundMe.map(\.rank) == [2, 4, 5])
            #expect(board.rankedUsers == 5)
            let week = try await harness.connection.progress.leaderboard(options: .session(users[3].token)) { $0.period = .week }
            #expect(week.rankedUsers == 4)
            #expect(week.me.rank == 5 && week.me.xp == 0)
            let none = try await harness.connection.progress.leaderboard(LeaderboardRequest(), options: .session(users[5].token))
            // Without XP: after the last ranked users, beside them, named like everyone else.
            #expect(none.me.rank == 6 && none.me.displayName == "Test User")
            #expect(none.aroundMe.map(\.rank) == [4, 5, 6] && none.aroundMe.last == none.me)
            await expectRPCError(.invalidArgument) {
                try await harness.connection.progress.leaderboard(options: .session(users[0].token)) { $0.limit = 101 }
            }
        }
    }
}
