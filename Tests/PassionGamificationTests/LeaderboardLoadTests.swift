import Foundation
import PassionStore
import PassionTestSupport
import Testing

@testable import PassionServices

/// The board load a restart makes: pages read in place while the next is fetched, deleted users
/// left out, and a board built from those pages identical to one built from the whole table.
@Suite("Leaderboard load from the database, page by page")
struct LeaderboardLoadTests {
    @Test("pages of 3 over 12 users with XP: every live user once, in user id order, the deleted one left out, both periods")
    func pagedLoad() async throws {
        let pool = try await TestDatabase.migratedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let ids = (1...13).map { String(format: "00000000-0000-0000-0000-%012d", $0) }
        try await pool.withConnection { connection in
            for (index, id) in ids.enumerated() {
                try await connection.query("""
                    INSERT INTO users (id, email, display_name, timezone)
                    VALUES (\(id)::uuid, \("load\(index)@example.com"), 'Player', 'UTC')
                    """)
                // The 13th user never earns XP: no total, so no row on either board.
                guard index < 12 else { continue }
                try await connection.query("INSERT INTO points_ledger (user_id, points, reason) VALUES (\(id)::uuid, \(10 + (index * 7) % 5), 'grant')")
            }
            try await connection.query("UPDATE users SET deleted_at = now(), is_active = false WHERE id = \(ids[4])::uuid")
        }
        let live = Set(ids.prefix(12)).subtracting([ids[4]])
        var store = LeaderboardStore(pool: pool)
        store.pageSize = 3
        for period in [LeaderboardPeriod.allTime, .week(LocalDate.weekStart(of: Date()))] {
            var pages: [[RankedScores.Entry]] = []
            try await store.scores(period, from: pool) { pages.append($0) }
            // 12 rows in 4 full pages (the second less its deleted user), then the empty page that shows the end.
            #expect(pages.map(\.count) == [3, 2, 3, 3, 0], "\(period)")
            let users = pages.joined().map { $0.user.uuid.uuidString.lowercased() }
            #expect(users == live.sorted(), "\(period)")
            let scores = pages.joined().map(\.score)
            #expect(scores == ids.indices.filter { live.contains(ids[$0]) }.map { Int64(10 + ($0 * 7) % 5) }, "\(period)")
        }
    }

    @Test("a standby that cannot be reached: the board, its size estimate included, loads from the primary")
    func unreachableStandby() async throws {
        let pool = try await TestDatabase.migratedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let standby = PostgresPool(configuration: PoolConfiguration(conninfo: "host=/nonexistent/passion-standby dbname=passion user=postgres"))
        defer { Task { await standby.shutdown() } }
        let id = "00000000-0000-0000-0000-000000000077"
        try await pool.withConnection { connection in
            try await connection.query("INSERT INTO users (id, email, display_name, timezone) VALUES (\(id)::uuid, 'standby@example.com', 'Player', 'UTC')")
            try await connection.query("INSERT INTO points_ledger (user_id, points, reason) VALUES (\(id)::uuid, 25, 'grant')")
        }
        var store = LeaderboardStore(pool: pool, reads: standby)
        store.standbyPatience = .zero  // one try, not the 10 s a restarting standby gets
        let board = try await store.board(.allTime)
        #expect(board.count == 1)
        #expect(board.score(of: RankedScores.UserKey(try #require(UUID(uuidString: id)))) == 25)
    }
}
