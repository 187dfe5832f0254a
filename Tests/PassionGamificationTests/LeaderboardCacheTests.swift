import Foundation
import Logging
import PassionClient
import PassionRPCServer
import PassionServerAPI
import PassionStore
import PassionTestSupport
import Testing

@testable import PassionServices

@Suite("Leaderboards in memory: across instances, after restarts, by week")
struct LeaderboardCacheTests {
    static let writer = ServiceHarness.service("progress")

    /// A second instance's board on the harness's database, running until `body` returns.
    static func withSecondInstance<T>(_ harness: ServiceHarness, _ body: (LeaderboardCache) async throws -> T) async throws -> T {
        let cache = try LeaderboardCache(pool: harness.pool, logger: .quiet("second-instance"))
        let running = Task { try await cache.run() }
        defer { running.cancel() }
        await cache.waitUntilReady()
        return try await body(cache)
    }

    static func award(_ harness: ServiceHarness, _ user: String, _ points: Int32, key: String) async throws {
        _ = try await harness.connection.progress.awardXP(options: writer) {
            $0.userID = user
            $0.points = points
            $0.reason = "grant"
            $0.idempotencyKey = key
        }
    }

    static func id(_ text: String) throws -> UUID { try #require(UUID(uuidString: text)) }

    @Test("an award through one instance shows in another's boards, all-time and weekly; a deletion takes the user off both")
    func acrossInstances() async throws {
        try await ServiceHarness.with { harness in
            let a = try await harness.signIn()
            let b = try await harness.signIn()
            try await Self.withSecondInstance(harness) { other in
                try await Self.award(harness, a.id, 100, key: "a")
                try await Self.award(harness, b.id, 200, key: "b")
                try await other.settle()
                let thisWeek = LeaderboardPeriod.week(LocalDate.weekStart(of: Date()))
                for period in [LeaderboardPeriod.allTime, thisWeek] {
                    let board = try await other.standings(period, caller: try Self.id(a.id), limit: 10, neighbours: 2)
                    #expect(board.top.map(\.user) == [try Self.id(b.id), try Self.id(a.id)], "\(period)")
                    #expect(board.me.rank == 2 && board.rankedUsers == 2, "\(period)")
                }
                _ = try await harness.connection.users.deleteAccount(DeleteAccountRequest(), options: .session(b.token))
                try await other.settle()
                for period in [LeaderboardPeriod.allTime, thisWeek] {
                    let board = try await other.standings(period, caller: try Self.id(a.id), limit: 10, neighbours: 2)
                    #expect(board.top.map(\.user) == [try Self.id(a.id)] && board.me.rank == 1, "\(period)")
                }
                #expect(try other.allTimeRank(of: try Self.id(a.id), xp: 110) == 1)
            }
        }
    }

    @Test("a caller sees their own award at once, in both periods, without waiting for the notification")
    func readYourOwnWrites() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            for (round, points) in [40, 25, 35].enumerated() {
                try await Self.award(harness, user.id, Int32(points), key: "own-\(round)")
                let allTime = try await harness.connection.progress.leaderboard(LeaderboardRequest(), options: .session(user.token))
                let week = try await harness.connection.progress.leaderboard(options: .session(user.token)) { $0.period = .week }
                let expected: Int64 = [50, 75, 110][round]  // first_steps adds 10 with the first award
                #expect(allTime.me.xp == expected && week.me.xp == expected && allTime.me.rank == 1, "round \(round)")
                #expect(allTime.top.first?.xp == expected && allTime.top.first?.displayName == "Test User")
            }
        }
    }

    @Test("a new instance loads the boards from the database; before its load ends ranks are UNAVAILABLE, naming why")
    func restart() async throws {
        try await ServiceHarness.with { harness in
            var users: [ServiceHarness.SignedIn] = []
            for (index, points) in [300, 100, 300, 50].enumerated() {
                let user = try await harness.signIn()
                try await Self.award(harness, user.id, Int32(points), key: "seed-\(index)")
                users.append(user)
            }
            let fresh = try LeaderboardCache(pool: harness.pool, logger: .quiet("restarted"))
            let refused = #expect(throws: RPCError.self) { try fresh.allTimeRank(of: try Self.id(users[0].id), xp: 310) }
            #expect(refused?.code == .unavailable && refused?.details?.reason == "RANKS_LOADING")
            let running = Task { try await fresh.run() }
            defer { running.cancel() }
            await fresh.waitUntilReady()
            // 310, 110, 310, 60 with first_steps' 10: ranks 1, 3, 1, 4.
            for (user, rank) in zip(users, [1, 3, 1, 4] as [Int64]) {
                let board = try await fresh.standings(.allTime, caller: try Self.id(user.id), limit: 2, neighbours: 1)
                #expect(board.me.rank == rank)
            }
        }
    }

    @Test("past weeks: XP is ranked in the UTC week it was earned; week_start that is not a Monday, in the future or too old is refused")
    func pastWeeks() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let lastMonday = LocalDate(daysSinceEpoch: LocalDate.weekStart(of: Date()).daysSinceEpoch - 7)
            // A ledger row dated in last week's middle, written as any other insert: the trigger files it.
            try await harness.pool.withConnection { connection in
                try await connection.query("""
                    INSERT INTO points_ledger (user_id, points, reason, created_at)
                    VALUES (\(try Self.id(user.id)), 40, 'grant', \(lastMonday)::date + interval '3 days 12 hours')
                    """)
            }
            try await harness.settleLeaderboards()
            let past = try await harness.connection.progress.leaderboard(options: .session(user.token)) {
                $0.period = .week
                $0.weekStart = lastMonday.description
            }
            #expect(past.me.xp == 40 && past.me.rank == 1 && past.rankedUsers == 1)
            let now = try await harness.connection.progress.leaderboard(options: .session(user.token)) { $0.period = .week }
            #expect(now.me.xp == 0 && now.rankedUsers == 0)
            let allTime = try await harness.connection.progress.leaderboard(LeaderboardRequest(), options: .session(user.token))
            #expect(allTime.me.xp == 40)

            let thisMonday = LocalDate.weekStart(of: Date())
            let refusals: [(String, LeaderboardRequest.Period, String)] = [
                (LocalDate(daysSinceEpoch: lastMonday.daysSinceEpoch + 1).description, .week, "must be a Monday"),
                (LocalDate(daysSinceEpoch: thisMonday.daysSinceEpoch + 7).description, .week, "is in the future"),
                (LocalDate(daysSinceEpoch: thisMonday.daysSinceEpoch - 7 * 53).description, .week, "within the 52 weeks"),
                ("2026-13-01", .week, "YYYY-MM-DD"),
                (thisMonday.description, .allTime, "only for the WEEK period"),
            ]
            for (weekStart, period, message) in refusals {
                let error = await expectRPCError(.invalidArgument) {
                    try await harness.connection.progress.leaderboard(options: .session(user.token)) {
                        $0.period = period
                        $0.weekStart = weekStart
                    }
                }
                #expect(error?.details?.fields["field"] == "week_start", "\(weekStart)")
                #expect(error?.message.contains(message) == true, "\(weekStart): \(error?.message ?? "")")
            }
            let oldest = try await harness.connection.progress.leaderboard(options: .session(user.token)) {
                $0.period = .week
                $0.weekStart = LocalDate(daysSinceEpoch: thisMonday.daysSinceEpoch - 7 * 52).description
            }
            #expect(oldest.rankedUsers == 0)
        }
    }

    @Test("a lost listener connection reloads every board: a change made while it was away still shows")
    func reloadAfterReconnect() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let killed = try await harness.pool.withConnection { connection in
                try await connection.query("""
                    SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
                    WHERE application_name = 'passion-listener' AND datname = current_database()
                    """).first?.decode("n", as: Int.self)
            }
            #expect(killed == 2)  // the event hub's and the leaderboards'
            try await Self.award(harness, user.id, 70, key: "while-away")
            // Settling waits for the reload when its own NOTIFY is lost with the connection.
            try await harness.settleLeaderboards()
            let board = try await harness.connection.progress.leaderboard(LeaderboardRequest(), options: .session(user.token))
            #expect(board.me.xp == 80 && board.rankedUsers == 1)
        }
    }

    @Test("migration 0013 files an existing ledger by week without losing a point; the integrity check compares them")
    func migrationBackfill() async throws {
        let (pool, _) = try await TestDatabase.freshPool()
        defer { Task { await pool.shutdown() } }
        let all = try Migration.bundled()
        let before = all.filter { $0.name < "0013" }
        #expect(all.map(\.name).contains("0013_weekly_xp") && !before.map(\.name).contains("0013_weekly_xp"))
        _ = try await Migrator(migrations: before).migrate(pool)
        let users = try await pool.withConnection { connection in
            try await connection.query("""
                WITH u AS (
                    INSERT INTO users (email, display_name)
                    SELECT 'user' || n || '@example.com', 'User ' || n FROM generate_series(1, 20) n RETURNING id
                )
                INSERT INTO points_ledger (user_id, points, reason, created_at)
                SELECT u.id, 5 + w, 'grant', now() - w * interval '4 days' FROM u, generate_series(0, 20) w
                RETURNING user_id
                """).count
        }
        #expect(users == 20 * 21)
        _ = try await Migrator(migrations: all).migrate(pool)
        let (ledger, weekly, weeks) = try await pool.withConnection { connection in
            let row = try await connection.query("""
                SELECT (SELECT sum(points) FROM points_ledger) AS ledger, (SELECT sum(xp) FROM user_xp_weeks) AS weekly,
                       (SELECT count(DISTINCT week_start) FROM user_xp_weeks) AS weeks
                """).first
            return (try row?.require("ledger", as: Int64.self), try row?.require("weekly", as: Int64.self), try row?.require("weeks", as: Int.self))
        }
        #expect(ledger == weekly && ledger == 20 * (21 * 5 + 210))
        #expect((weeks ?? 0) >= 12)
        #expect(try await IntegrityCheck.run(pool) == [])
        try await pool.withConnection { connection in
            try await connection.execute("UPDATE user_xp_weeks SET xp = xp + 1 WHERE week_start = (SELECT max(week_start) FROM user_xp_weeks) AND user_id = (SELECT user_id FROM user_xp_weeks ORDER BY 1 LIMIT 1)")
        }
        #expect(try await IntegrityCheck.run(pool).map(\.check) == ["weekly_xp_mismatch"])
    }
}
