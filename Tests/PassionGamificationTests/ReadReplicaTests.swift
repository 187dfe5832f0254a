import Foundation
import Logging
import PassionClient
import PassionRPCServer
import PassionServerAPI
import PassionStore
import PassionTestSupport
import Testing

@testable import PassionServices

/// A real streaming standby (`pg_basebackup -R`) of the test cluster serves the reads that may
/// lag. Its replay is paused to tell the two paths apart: what a caller must see of their own
/// writes still shows; what may lag does not, until replay resumes.
@Suite("Reads from a hot standby", .serialized)
struct ReadReplicaTests {
    static let writer = ServiceHarness.service("progress")
    static let admin = ServiceHarness.service("admin")

    static func replay(_ harness: ServiceHarness, paused: Bool) async throws {
        let standby = try #require(harness.reads)
        _ = try await standby.withConnection { connection in
            try await connection.query(paused ? "SELECT pg_wal_replay_pause()" : "SELECT pg_wal_replay_resume()")
        }
    }

    @Test("lagging reads (ledger history, catalog, audit) come from the standby; GetProgress, Leaderboard and Dashboard from the primary")
    func bothPaths() async throws {
        try await ServiceHarness.with(standbyReads: true) { harness in
            let user = try await harness.signIn()
            let progress = harness.connection.progress
            _ = try await progress.awardXP(options: Self.writer) {
                $0.userID = user.id
                $0.points = 50
                $0.reason = "grant"
                $0.idempotencyKey = "before-pause"
            }
            try await TestDatabase.waitForStandby(primary: harness.pool, standby: try #require(harness.reads))
            try await Self.replay(harness, paused: true)
            do {
                _ = try await progress.awardXP(options: Self.writer) {
                    $0.userID = user.id
                    $0.points = 30
                    $0.reason = "grant"
                    $0.idempotencyKey = "while-paused"
                }
                _ = try await harness.connection.achievements.define(options: Self.admin) {
                    $0.achievement = Achievement.with {
                        $0.slug = "standby_probe"
                        $0.title = "Standby probe"
                        $0.category = "challenge"
                        $0.rarity = "rare"
                        $0.condition = UnlockCondition.with {
                            $0.type = "total_xp"
                            $0.value = 1_000_000
                        }
                    }
                }
                // The primary: the caller's own totals and rank, at once.
                let mine = try await progress.getProgress(GetProgressRequest(), options: .session(user.token))
                #expect(mine.totalXp == 90 && mine.allTimeRank == 1)  // 50 + 30 + first_steps' 10
                let board = try await progress.leaderboard(LeaderboardRequest(), options: .session(user.token))
                #expect(board.me.xp == 90)
                let dashboard = try await harness.connection.goals.dashboard(DashboardRequest(), options: .session(user.token))
                #expect(dashboard.totalXp == 90)
                // The standby: history and catalog as they were when replay paused.
                let ledger = try await progress.listPointsLedger(ListLedgerRequest(), options: .session(user.token))
                #expect(ledger.entries.map(\.points).sorted() == [10, 50])
                let catalog = try await harness.connection.achievements.catalog(CatalogRequest(), options: .session(user.token))
                #expect(!catalog.achievements.contains { $0.slug == "standby_probe" })
                let audit = try await harness.connection.audit.query(options: Self.admin) { $0.action = "achievement.defined" }
                #expect(audit.entries.isEmpty)
            } catch {
                try await Self.replay(harness, paused: false)
                throw error
            }
            try await Self.replay(harness, paused: false)
            try await TestDatabase.waitForStandby(primary: harness.pool, standby: try #require(harness.reads))
            let ledger = try await progress.listPointsLedger(ListLedgerRequest(), options: .session(user.token))
            #expect(ledger.entries.map(\.points).sorted() == [10, 30, 50])
            let catalog = try await harness.connection.achievements.catalog(CatalogRequest(), options: .session(user.token))
            #expect(catalog.achievements.contains { $0.slug == "standby_probe" })
            let audit = try await harness.connection.audit.query(options: Self.admin) { $0.action = "achievement.defined" }
            #expect(audit.entries.count == 1)
        }
    }

    @Test("a board loaded from a standby that lags waits for it to replay what the primary had: nothing awarded before the load is missing")
    func boardLoadWaitsForReplay() async throws {
        try await ServiceHarness.with(standbyReads: true) { harness in
            let user = try await harness.signIn()
            // Reads the board as someone else: a read re-reads only its caller's own totals.
            let onlooker = try #require(UUID(uuidString: try await harness.signIn().id))
            try await TestDatabase.waitForStandby(primary: harness.pool, standby: try #require(harness.reads))
            try await Self.replay(harness, paused: true)
            let loaded: Standings
            do {
                _ = try await harness.connection.progress.awardXP(options: Self.writer) {
                    $0.userID = user.id
                    $0.points = 70
                    $0.reason = "grant"
                    $0.idempotencyKey = "while-paused"
                }
                let cache = try LeaderboardCache(pool: harness.pool, reads: harness.reads, logger: .quiet("standby-load"))
                let running = Task { try await cache.run() }
                defer { running.cancel() }
                let resume = Task {
                    // The load is under way (or about to be) and cannot finish from the paused standby.
                    try await Self.replay(harness, paused: false)
                }
                await cache.waitUntilReady()
                try await resume.value
                loaded = try await cache.standings(.allTime, caller: onlooker, limit: 5, neighbours: 1)
            } catch {
                try await Self.replay(harness, paused: false)
                throw error
            }
            #expect(loaded.top.map(\.xp) == [80] && loaded.top.first?.user.uuidString.lowercased() == user.id && loaded.rankedUsers == 1)
        }
    }
}
