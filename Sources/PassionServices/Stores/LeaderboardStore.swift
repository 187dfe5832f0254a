import Foundation
import PassionStore

/// The SQL behind the in-memory leaderboards: whole boards read in pages at load, and the
/// current totals of the users a notification named.
struct LeaderboardStore: Sendable {
    let pool: PostgresPool
    /// Board loads read here when set (a hot standby), once it has caught up.
    var reads: PostgresPool?

    /// Rows per page of a board load: one statement's result stays a few MB.
    var pageSize = 50_000
    /// Users per re-read statement.
    static let refreshBatch = 1_000

    /// A user's totals: all-time, and in each week asked for (a week without XP is absent).
    struct Totals: Sendable {
        var allTime: Int64
        var weeks: [LocalDate: Int64]
    }

    /// `period`'s whole board as the database has it now.
    func board(_ period: LeaderboardPeriod) async throws -> RankedScores {
        let source = try await caughtUpSource()
        var builder = RankedScores.Builder(expectedCount: await expectedSize(period, from: source))
        try await scores(period, from: source) { builder.add($0) }
        return builder.build()
    }

    /// Every live user with XP in `period`, paged by user id so no statement holds the board;
    /// each page goes to `receive` while the database reads the next.
    func scores(_ period: LeaderboardPeriod, from source: PostgresPool, _ receive: ([RankedScores.Entry]) -> Void) async throws {
        // Deleted users are read once, first, rather than joined page by page; a user deleted
        // during the load notifies like any change, and the refresh after the load drops them.
        let deleted = try await source.withConnection { connection in
            try await connection.query("SELECT id FROM users WHERE deleted_at IS NOT NULL")
        }
        let gone = Set(try deleted.map { RankedScores.UserKey(try $0.require("id", as: UUID.self)) })
        let live = { (page: [RankedScores.Entry]) in gone.isEmpty ? page : page.filter { !gone.contains($0.user) } }
        var page = try await readPage(period, after: nil, from: source)
        while page.count == pageSize, let last = page.last {
            async let following = readPage(period, after: last.user.uuid, from: source)
            receive(live(page))
            page = try await following
        }
        receive(live(page))
    }

    /// How many users `period`'s board may hold, from the planner's row count of the totals
    /// table (0 when unknown, and for weeks, which the count of all weeks' rows would overstate
    /// many times): the load sizes its tables once instead of growing them twenty-odd times,
    /// which cost as much as filling them at 10M users. Only a hint: a failure reads as 0.
    private func expectedSize(_ period: LeaderboardPeriod, from source: PostgresPool) async -> Int {
        guard case .allTime = period else { return 0 }
        let estimate = try? await source.withConnection { connection in
            try await connection.query("SELECT greatest(reltuples, 0)::int8 AS estimate FROM pg_class WHERE oid = 'user_progress'::regclass") { result in
                result.count == 1 ? try result.int64(0, 0) : 0
            }
        }
        return Int(clamping: estimate ?? 0)
    }

    /// One page of `period`'s board after the user id `after`, read in place: copying it into
    /// `Rows` and decoding by column name cost more than the database's work at 10M users.
    private func readPage(_ period: LeaderboardPeriod, after: UUID?, from source: PostgresPool) async throws -> [RankedScores.Entry] {
        let statement = page(period, after: after)
        return try await source.withConnection { connection in
            try await connection.query(statement) { result in
                let user = try result.column("user_id")
                let xp = try result.column("xp")
                var page: [RankedScores.Entry] = []
                page.reserveCapacity(result.count)
                for row in 0..<result.count {
                    page.append(RankedScores.Entry(score: try result.int64(row, xp), user: RankedScores.UserKey(try result.uuid(row, user))))
                }
                return page
            }
        }
    }

    /// The standby once it has replayed everything the primary had written when asked, so no
    /// change made before the listener listened is missing from the load; the primary when
    /// there is no standby, or it is unreachable or more than `standbyPatience` behind.
    private func caughtUpSource() async throws -> PostgresPool {
        guard let reads else { return pool }
        return try await StandbyReplay.waitUntilReplayed(primary: pool, standby: reads, patience: standbyPatience) ? reads : pool
    }

    /// How far behind a standby may be before a load reads the primary instead.
    var standbyPatience: Duration = .seconds(10)

    private func page(_ period: LeaderboardPeriod, after: UUID?) -> SQL {
        switch (period, after) {
        case (.allTime, nil):
            "SELECT user_id, total_xp AS xp FROM user_progress WHERE total_xp > 0 ORDER BY user_id LIMIT \(pageSize)"
        case (.allTime, let after?):
            "SELECT user_id, total_xp AS xp FROM user_progress WHERE total_xp > 0 AND user_id > \(after) ORDER BY user_id LIMIT \(pageSize)"
        case (.week(let monday), nil):
            """
            SELECT user_id, xp FROM user_xp_weeks WHERE week_start = \(monday) AND xp > 0
            ORDER BY user_id LIMIT \(pageSize)
            """
        case (.week(let monday), let after?):
            """
            SELECT user_id, xp FROM user_xp_weeks WHERE week_start = \(monday) AND xp > 0 AND user_id > \(after)
            ORDER BY user_id LIMIT \(pageSize)
            """
        }
    }

    /// The current totals of `users` (deleted or unknown users are absent).
    func totals(of users: [UUID], weeks: [LocalDate]) async throws -> [UUID: Totals] {
        let rows = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT u.id AS user_id, NULL::date AS week_start, coalesce(p.total_xp, 0) AS xp
                FROM users u LEFT JOIN user_progress p ON p.user_id = u.id
                WHERE u.id = ANY(\(users)::uuid[]) AND u.deleted_at IS NULL
                UNION ALL
                SELECT w.user_id, w.week_start, w.xp
                FROM user_xp_weeks w JOIN users u ON u.id = w.user_id AND u.deleted_at IS NULL
                WHERE w.week_start = ANY(\(weeks)::date[]) AND w.user_id = ANY(\(users)::uuid[])
                """)
        }
        var totals: [UUID: Totals] = [:]
        for row in rows {
            let user = try row.require("user_id", as: UUID.self)
            let xp = try row.require("xp", as: Int64.self)
            if let monday = try row.decode("week_start", as: LocalDate.self) {
                totals[user, default: Totals(allTime: 0, weeks: [:])].weeks[monday] = xp
            } else {
                totals[user, default: Totals(allTime: 0, weeks: [:])].allTime = xp
            }
        }
        return totals
    }

    /// Display names of `users` and, read in the same statement, `caller`'s current XP in
    /// `period` (0 when none): whether the board has applied the caller's latest change.
    func names(
        of users: [UUID], caller: UUID, period: LeaderboardPeriod, deadline: ContinuousClock.Instant?
    ) async throws -> (names: [UUID: String], callerXP: Int64) {
        let callerXP: SQL = switch period {
        case .allTime: "(SELECT p.total_xp FROM user_progress p WHERE p.user_id = u.id)"
        case .week(let monday): "(SELECT w.xp FROM user_xp_weeks w WHERE w.week_start = \(monday) AND w.user_id = u.id)"
        }
        let rows = try await pool.withConnection(deadline: deadline) { connection in
            try await connection.query("""
                SELECT u.id, u.display_name, CASE WHEN u.id = \(caller) THEN coalesce(\(callerXP), 0) END AS caller_xp
                FROM users u WHERE u.id = ANY(\(users)::uuid[])
                """)
        }
        var names: [UUID: String] = [:]
        var xp: Int64 = 0
        for row in rows {
            let id = try row.require("id", as: UUID.self)
            names[id] = try row.decode("display_name", as: String.self) ?? ""
            if let own = try row.decode("caller_xp", as: Int64.self) { xp = max(0, own) }
        }
        return (names, xp)
    }

    /// NOTIFY `channel` with `payload`.
    func notify(_ channel: String, _ payload: String) async throws {
        try await pool.withConnection { connection in
            _ = try await connection.query("SELECT pg_notify(\(channel), \(payload))")
        }
    }
}
