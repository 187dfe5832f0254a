import Foundation
import PassionIdentity
import PassionStore
import PassionTestSupport
import Testing

/// The append-only tables partitioned by time (migration 0014): the conversion of a populated
/// database, partitions made ahead, the audit retention, the events trim.
@Suite("Partitioned append-only tables")
struct PartitionTests {
    static let partitioned = ["points_ledger", "coins_ledger", "audit_logs", "progress_events"]

    @Test("migration 0014 moves every row into its month's (events: day's) partition unchanged; ids, keys and refunds carry over")
    func migrationKeepsEveryRow() async throws {
        let (pool, _) = try await TestDatabase.freshPool()
        defer { Task { await pool.shutdown() } }
        let all = try Migration.bundled()
        let before = all.filter { $0.name < "0014" }
        #expect(all.map(\.name).contains("0014_partitions") && !before.map(\.name).contains("0014_partitions"))
        _ = try await Migrator(migrations: before).migrate(pool)
        // Three users with 14 months of history each: XP, coins earned, a spend and its refund,
        // audit rows; events from now and from three days ago.
        let spend = try await pool.withConnection { connection in
            try await connection.execute("""
                INSERT INTO users (email) SELECT 'user' || n || '@example.com' FROM generate_series(1, 3) n;
                INSERT INTO points_ledger (user_id, points, reason, idempotency_key, created_at)
                SELECT u.id, 10 + k, 'grant', 'xp-' || k, now() - k * interval '20 days' FROM users u, generate_series(0, 21) k;
                INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, idempotency_key, created_at)
                SELECT u.id, 5 + k, 'earned', 'grant', 'coins-' || k, now() - k * interval '33 days' FROM users u, generate_series(0, 12) k;
                INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, idempotency_key, created_at)
                SELECT u.id, -7, 'spent', 'shop_purchase', 'spend', now() - interval '40 days' FROM users u;
                INSERT INTO coins_ledger (user_id, coins, transaction_type, reason, idempotency_key, refund_of)
                SELECT user_id, 7, 'refund', 'shop_purchase', 'refund', id FROM coins_ledger WHERE transaction_type = 'spent';
                INSERT INTO audit_logs (user_id, action, status, created_at, principal)
                SELECT u.id, 'user.signed_in', 'success', now() - k * interval '25 days', 'user:' || u.id FROM users u, generate_series(0, 16) k;
                INSERT INTO progress_events (user_id, type, payload, created_at)
                SELECT u.id, 'xp_awarded', jsonb_build_object('k', k), now() - k * interval '36 hours' FROM users u, generate_series(0, 2) k;
                """)
            return try await connection.query("""
                SELECT id, user_id FROM coins_ledger WHERE transaction_type = 'spent' ORDER BY id LIMIT 1
                """).first.map { (try $0.require("id", as: Int64.self), try $0.require("user_id", as: UUID.self)) }
        }
        let (spendID, spender) = try #require(spend)
        let snapshot = try await Self.snapshot(pool)
        #expect(snapshot["points_ledger"]?.hasPrefix("66 ") == true && snapshot["audit_logs"]?.hasPrefix("51 ") == true)

        _ = try await Migrator(migrations: all).migrate(pool)

        // Every row as it was, ids and all; the sequences where they were; totals untouched.
        #expect(try await Self.snapshot(pool) == snapshot)
        #expect(try await IntegrityCheck.run(pool) == [])
        try await pool.withConnection { connection in
            for table in Self.partitioned {
                let unit = table == "progress_events" ? "day" : "month"
                // Ledger and audit rows each sit in their own month; the events of three days
                // ago (past any resume window) in the default partition, the rest in their day.
                let misplaced = try await connection.query("""
                    SELECT count(*) AS n FROM \(unsafeSQL: table)
                    WHERE tableoid::regclass::text <> CASE WHEN created_at < now() - interval '2 days' AND \(unit) = 'day'
                                                           THEN \(table) || '_default'
                                                           ELSE passion_partition_name(\(table), \(unit), created_at) END
                    """).first?.require("n", as: Int.self)
                #expect(misplaced == 0, "\(table)")
            }
            let carried = try await connection.query("""
                SELECT (SELECT count(*) FROM points_ledger_keys) AS xp_keys, (SELECT count(*) FROM coins_ledger_keys) AS coin_keys,
                       (SELECT count(*) FROM coins_refunds) AS refunds
                """).first
            #expect(try carried?.require("xp_keys", as: Int.self) == 66)
            #expect(try carried?.require("coin_keys", as: Int.self) == 45)
            #expect(try carried?.require("refunds", as: Int.self) == 3)
        }

        // After the conversion: ids continue past the old ones, a reused key and a second
        // refund of the same spend are refused, and nothing moves.
        let snapshotAfter = try await Self.snapshot(pool, positions: false)
        let failures = try await pool.withConnection { connection -> [StoreError?] in
            var failures: [StoreError?] = []
            for statement in [
                "INSERT INTO points_ledger (user_id, points, reason, idempotency_key) VALUES ('\(spender)', 1, 'grant', 'xp-3')",
                "SELECT passion_reward('\(spender)', 'refund', 0, 'shop_purchase', NULL, NULL, 'refund-again', \(spendID), 'test', NULL, NULL)",
            ] {
                do {
                    try await connection.execute(statement)
                    failures.append(nil)
                } catch let error as StoreError {
                    failures.append(error)
                }
            }
            return failures
        }
        #expect(failures.map { $0?.sqlState } == ["23505", "P0A15"])
        #expect(failures.first??.constraint == "points_ledger_keys_pkey")
        // (A refused insert still spends a sequence value: the positions are left out here.)
        #expect(try await Self.snapshot(pool, positions: false) == snapshotAfter)
        let next = try await pool.withConnection { connection in
            try await connection.query("""
                INSERT INTO points_ledger (user_id, points, reason) VALUES (\(spender), 1, 'grant') RETURNING id,
                       (SELECT max(id) FROM points_ledger) AS old_max
                """).first.map { (try $0.require("id", as: Int64.self), try $0.require("old_max", as: Int64.self)) }
        }
        #expect(next.map { $0.0 > $0.1 } == true)
        #expect(try await IntegrityCheck.run(pool) == [])

        // The side tables are proved: a key row lost, and a refund recorded against another spend.
        try await pool.withConnection { connection in
            try await connection.execute("""
                DELETE FROM coins_ledger_keys WHERE idempotency_key = 'coins-5' AND user_id = '\(spender)';
                UPDATE coins_refunds SET refund_of = (SELECT id FROM coins_ledger WHERE transaction_type = 'earned' LIMIT 1)
                WHERE refund_of = \(spendID);
                """)
        }
        let problems = try await IntegrityCheck.run(pool)
        #expect(problems.map(\.check).sorted() == ["ledger_key_mismatch", "refund_mismatch", "refund_mismatch"], "\(problems)")
        #expect(problems.first { $0.check == "ledger_key_mismatch" }?.detail.contains("coins_ledger row") == true)
    }

    @Test("partitions are days or months: any other unit is refused with 22023")
    func badPartitionUnit() async throws {
        let pool = try await TestDatabase.migratedPool(size: 1)
        defer { Task { await pool.shutdown() } }
        let before = try await pool.withConnection { connection in
            try await connection.query("SELECT count(*) AS n FROM passion_partitions('points_ledger')").first?.require("n", as: Int.self)
        }
        let refused = await #expect(throws: StoreError.self) {
            try await pool.withConnection { connection in
                _ = try await connection.query("SELECT passion_create_partitions('points_ledger', 'week', now(), now() + interval '1 year')")
            }
        }
        #expect(refused?.sqlState == "22023" && refused?.serverMessage.contains("not week") == true, "\(String(describing: refused))")
        let after = try await pool.withConnection { connection in
            try await connection.query("SELECT count(*) AS n FROM passion_partitions('points_ledger')").first?.require("n", as: Int.self)
        }
        #expect(after == before)
    }

    @Test("partitions are made ahead, once however often asked; a month the default partition caught stays there")
    func partitionsAhead() async throws {
        let pool = try await TestDatabase.migratedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let names = { (table: String) in
            try await pool.withConnection { connection in
                try await connection.query("SELECT partition_name FROM passion_partitions(\(table))").map {
                    try $0.require("partition_name", as: String.self)
                }
            }
        }
        // Six months ahead: three months more than the migration made, for each monthly table.
        let later = Date().addingTimeInterval(180 * 86_400)
        // A row from eight months ahead (a wrong clock, a bulk load) has no partition yet.
        let early = try await pool.withConnection { connection in
            try await connection.execute("""
                INSERT INTO users (id, email) VALUES ('00000000-0000-0000-0000-0000000000c1', 'c@example.com');
                INSERT INTO points_ledger (user_id, points, reason, created_at)
                VALUES ('00000000-0000-0000-0000-0000000000c1', 5, 'grant', now() + interval '8 months');
                """)
            return try await connection.query("""
                SELECT tableoid::regclass::text AS home, passion_partition_name('points_ledger', 'month', created_at) AS month
                FROM points_ledger
                """).first.map { (try $0.require("home", as: String.self), try $0.require("month", as: String.self)) }
        }
        #expect(early?.0 == "points_ledger_default")
        let maintenance = SessionMaintenance(pool: pool, now: { later })
        let first = try await maintenance.maintainPartitions(auditRetention: .forever)
        #expect(first.created >= 3 * 3 && first.auditPartitionsDropped == 0)
        #expect(try await maintenance.maintainPartitions(auditRetention: .forever).created == 0)
        let ledger = try await names("points_ledger")
        #expect(ledger.first == "points_ledger_default")
        let formatter = DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMM"
        // A month after `later`, about seven from now: never the early row's month, eight from
        // now (60 days after `later` fell in it whenever the month lengths lined up).
        #expect(ledger.contains("points_ledger_" + formatter.string(from: later.addingTimeInterval(30 * 86_400))))
        // The month of the early row: made for the other tables, not for the ledger holding it,
        // which keeps it in the default partition (creating one would fail on that row).
        let month = try #require(early?.1)
        #expect(!ledger.contains(month))
        let suffix = String(month.dropFirst("points_ledger_".count))
        #expect(try await names("coins_ledger").contains("coins_ledger_" + suffix))
        try await pool.withConnection { connection in
            let home = try await connection.query("SELECT tableoid::regclass::text AS home FROM points_ledger").first?.require("home", as: String.self)
            #expect(home == "points_ledger_default")
        }
        #expect(try await IntegrityCheck.run(pool) == [])
    }

    @Test("partition bounds are UTC midnights whatever zone and date style the calling session uses")
    func boundsIgnoreSessionSettings() async throws {
        let pool = try await TestDatabase.migratedPool(size: 1)
        defer { Task { await pool.shutdown() } }
        let bounds = try await pool.transaction { connection in
            try await connection.execute("SET LOCAL TimeZone = 'Asia/Kolkata'; SET LOCAL DateStyle = 'SQL, DMY'")
            _ = try await connection.query("SELECT passion_create_partitions('audit_logs', 'month', now() + interval '2 years', now() + interval '2 years')")
            try await connection.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'")
            return try await connection.query("""
                SELECT p.partition_name, p.lower_bound = date_trunc('month', (now() + interval '2 years') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS exact,
                       p.upper_bound - p.lower_bound BETWEEN interval '28 days' AND interval '31 days' AS month
                FROM passion_partitions('audit_logs') p
                WHERE p.partition_name = passion_partition_name('audit_logs', 'month', now() + interval '2 years')
                """).map { (try $0.require("exact", as: Bool.self), try $0.require("month", as: Bool.self)) }
        }
        #expect(bounds.count == 1 && bounds.first?.0 == true && bounds.first?.1 == true, "\(bounds)")
    }

    @Test("a table whose lock is busy is left for the next run and reported; the others are made, and a rerun makes it")
    func busyTableIsRetried() async throws {
        let pool = try await TestDatabase.migratedPool(size: 3)
        defer { Task { await pool.shutdown() } }
        let maintenance = SessionMaintenance(pool: pool, now: { Date().addingTimeInterval(400 * 86_400) })
        // An open transaction that wrote the XP ledger holds a lock partition DDL must wait for.
        // (Its user is made before: a transaction that wrote `users` would hold up every table's
        // partitions, whose foreign keys lock `users` while a partition is created.)
        let busy = try await pool.withConnection { holder in
            try await holder.execute("INSERT INTO users (id, email) VALUES ('00000000-0000-0000-0000-0000000000b1', 'b@example.com')")
            try await holder.execute("""
                BEGIN;
                INSERT INTO points_ledger (user_id, points, reason) VALUES ('00000000-0000-0000-0000-0000000000b1', 5, 'grant');
                """)
            let busy = try await maintenance.maintainPartitions(auditRetention: .forever)
            try await holder.execute("COMMIT")
            return busy
        }
        #expect(busy.failures.count == 1 && busy.failures.first?.hasPrefix("points_ledger:") == true, "\(busy.failures)")
        // Four months each of coins and audit, nine days of events.
        #expect(busy.created == 4 + 4 + 9, "\(busy)")
        let rerun = try await maintenance.maintainPartitions(auditRetention: .forever)
        #expect(rerun.failures.isEmpty && rerun.created == 4, "\(rerun)")
        #expect(try await maintenance.maintainPartitions(auditRetention: .forever).created == 0)
    }

    @Test("the events trim drops whole days past the resume window and keeps the window's rows")
    func eventsTrim() async throws {
        let pool = try await TestDatabase.migratedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        try await pool.withConnection { connection in
            try await connection.execute("""
                SELECT passion_create_partitions('progress_events', 'day', now() - interval '6 days', now());
                INSERT INTO users (id, email) VALUES ('00000000-0000-0000-0000-0000000000e1', 'e@example.com');
                INSERT INTO progress_events (user_id, type, payload, created_at)
                SELECT '00000000-0000-0000-0000-0000000000e1', 'xp_awarded', '{}', now() - k * interval '1 day' FROM generate_series(0, 5) k;
                INSERT INTO progress_events (user_id, type, payload, created_at)
                VALUES ('00000000-0000-0000-0000-0000000000e1', 'xp_awarded', '{}', now() - interval '23 hours');
                """)
        }
        let trim = try await SessionMaintenance(pool: pool).trimEvents()
        // Days 3–6 back end before the window's edge (25 h ago), and day 2 back too after
        // 01:00 UTC; day 1 back straddles it.
        #expect(trim.partitionsDropped >= 4, "\(trim)")
        let left = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT count(*) AS n, min(created_at) > now() - interval '25 hours' AS recent,
                       (SELECT count(*) FROM passion_partitions('progress_events') WHERE upper_bound <= now() - interval '25 hours') AS stale
                FROM progress_events
                """).first
        }
        // Now, 23 h and 24 h ago.
        #expect(try left?.require("n", as: Int.self) == 3)
        #expect(try left?.require("recent", as: Bool.self) == true)
        #expect(try left?.require("stale", as: Int.self) == 0)
    }

    @Test("an audit retention drops whole months past it, keeps the rest, and says so in the audit log; forever drops nothing")
    func auditRetention() async throws {
        let pool = try await TestDatabase.migratedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        try await pool.withConnection { connection in
            try await connection.execute("""
                SELECT passion_create_partitions('audit_logs', 'month', now() - interval '8 months', now());
                INSERT INTO audit_logs (action, status, created_at, principal)
                SELECT 'user.signed_in', 'success', now() - k * interval '1 month', 'service:test' FROM generate_series(0, 8) k;
                """)
        }
        let maintenance = SessionMaintenance(pool: pool)
        #expect(try await maintenance.maintainPartitions(auditRetention: .forever).auditPartitionsDropped == 0)
        let kept = { (predicate: String) in
            try await pool.withConnection { connection in
                try await connection.query("""
                    SELECT count(*) AS n FROM audit_logs WHERE action = 'user.signed_in' AND \(unsafeSQL: predicate)
                    """).first?.require("n", as: Int.self)
            }
        }
        #expect(try await kept("true") == 9)
        // 90 days: the month holding the edge stays whole, every month before it goes.
        let edge = "created_at >= date_trunc('month', (now() - interval '90 days') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        let expected = try #require(try await kept(edge))
        let retention = try #require(AuditRetention(parsing: "90d"))
        let outcome = try await maintenance.maintainPartitions(auditRetention: retention)
        #expect(outcome.auditPartitionsDropped >= 5, "\(outcome)")
        #expect(try await kept("true") == expected)
        #expect(try await kept("NOT (\(edge))") == 0)
        let recorded = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT details ->> 'partitions' AS partitions, details ->> 'retention_days' AS days FROM audit_logs
                WHERE action = 'audit.partitions_dropped'
                """).map { (try $0.require("partitions", as: String.self), try $0.require("days", as: String.self)) }
        }
        #expect(recorded.count == 1 && recorded.first?.0 == "\(outcome.auditPartitionsDropped)" && recorded.first?.1 == "90")
        #expect(try await maintenance.maintainPartitions(auditRetention: retention).auditPartitionsDropped == 0)
    }

    @Test("an audit retention is forever or at least 90 days")
    func retentionParsing() {
        #expect(AuditRetention(parsing: "forever") == .forever)
        #expect(AuditRetention(parsing: "90d")?.days == 90)
        #expect(AuditRetention(parsing: "400d")?.days == 400)
        for bad in ["89d", "30d", "0d", "-5d", "1y", "90", "12h", "", "d", "ninety"] {
            #expect(AuditRetention(parsing: bad) == nil, "\(bad)")
        }
    }

    /// Per table: its rows, every column, in id order, hashed; and each sequence's position.
    static func snapshot(_ pool: PostgresPool, positions: Bool = true) async throws -> [String: String] {
        try await pool.withConnection { connection in
            var snapshot: [String: String] = [:]
            for table in partitioned {
                let row = try await connection.query("""
                    SELECT count(*) AS n, md5(coalesce(string_agg(t::text, ',' ORDER BY t.id), '')) AS digest,
                           CASE WHEN \(positions) THEN (SELECT last_value FROM \(unsafeSQL: table + "_id_seq")) ELSE 0 END AS position
                    FROM \(unsafeSQL: table) t
                    """).first
                snapshot[table] = "\(try row?.require("n", as: Int.self) ?? -1) \(try row?.require("digest", as: String.self) ?? "") "
                    + "\(try row?.require("position", as: Int64.self) ?? -1)"
            }
            let totals = try await connection.query("""
                SELECT md5(string_agg(p::text, ',' ORDER BY p.user_id)) AS digest FROM (
                    SELECT user_id, total_xp, total_coins, coins_earned, current_level FROM user_progress) p
                """).first
            snapshot["user_progress"] = try totals?.require("digest", as: String.self)
            return snapshot
        }
    }
}
