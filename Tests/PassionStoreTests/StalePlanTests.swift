import MetricsTestKit
import NIOCore
import NIOPosix
import PassionRPC
@testable import PassionStore
import PassionTestSupport
import Testing

/// A migration that changes a prepared statement's result columns (`SELECT *` after ADD
/// COLUMN) while the server runs: PostgreSQL refuses the statement once (0A000); the call still
/// gets its answer, and no connection keeps the stale statement.
@Suite("prepared statements a schema change staled")
struct StalePlanTests {
    private static let read: SQL = "SELECT * FROM shelf"

    /// How many statements of `read`'s text the connection has prepared on the server.
    private static func preparedCopies(_ connection: PostgresConnection) async throws -> Int {
        try await connection.execute("SELECT count(*) AS n FROM pg_prepared_statements WHERE statement = 'SELECT * FROM shelf'")
            .first?.require("n", as: Int.self) ?? -1
    }

    @Test("an autocommit statement runs again, prepared anew, on its connection; the pool's other connections drop theirs too")
    func autocommit() async throws {
        let metrics = TestMetrics()
        let (pool, _) = try await TestDatabase.freshPool(size: 2) {
            $0.sharedReads = false
            $0.metrics = metrics
        }
        try await pool.withConnection { first in
            try await pool.withConnection { second in
                try await first.execute("CREATE TABLE shelf (a int); INSERT INTO shelf VALUES (1)")
                for connection in [first, second] { _ = try await connection.query(Self.read) }
                try await first.execute("ALTER TABLE shelf ADD COLUMN b int DEFAULT 2")

                let row = try await first.query(Self.read).first
                #expect(try row?.require("b", as: Int.self) == 2)
                #expect(try await Self.preparedCopies(first) == 1, "the stale statement was dropped on the server")

                // The other connection never meets the stale plan: its next statement drops
                // what it had prepared, whatever that statement is.
                _ = try await second.query("SELECT 1 AS one")
                #expect(try await Self.preparedCopies(second) == 0)
                #expect(try await second.query(Self.read).first?.require("b", as: Int.self) == 2)
            }
        }
        #expect(try metrics.expectCounter("passion_db_stale_plans_total").totalValue == 1)
        await pool.shutdown()
    }

    @Test("inside a transaction the stale plan aborts it, and the transaction runs again")
    func transaction() async throws {
        let (pool, _) = try await TestDatabase.freshPool(size: 1) { $0.sharedReads = false }
        try await pool.withConnection { connection in
            try await connection.execute("CREATE TABLE shelf (a int); INSERT INTO shelf VALUES (1)")
            _ = try await connection.query(Self.read)
            try await connection.execute("ALTER TABLE shelf ADD COLUMN b int DEFAULT 2")
        }
        let b = try await pool.transaction { connection in
            try await connection.query("UPDATE shelf SET a = a + 1")
            return try await connection.query(Self.read).first?.require("b", as: Int.self)
        }
        #expect(b == 2)
        let a = try await pool.withConnection { connection in
            #expect(try await Self.preparedCopies(connection) == 1)
            return try await connection.query("SELECT a FROM shelf").first?.require("a", as: Int.self)
        }
        #expect(a == 2, "the aborted attempt's update was rolled back, the second attempt's kept")
        await pool.shutdown()
    }

    @Test("a shared read runs again elsewhere; the shared connection then drops its prepared statements in its pipeline", .timeLimit(.minutes(2)))
    func sharedRead() async throws {
        let shelf = try await SharedShelf.start()
        try await shelf.pool.withConnection { try await $0.execute("ALTER TABLE shelf ADD COLUMN b int DEFAULT 2") }

        #expect(try await shelf.onLoop(Self.read).first?.require("b", as: Int.self) == 2)
        #expect(try await shelf.onLoop(Self.read).first?.require("b", as: Int.self) == 2)
        #expect(try await shelf.preparedOnShared() == 1, "only the statement prepared after the change")
        try await shelf.stop()
    }

    @Test("another 0A000 (a feature the server does not support) fails its call once, on either path, and drops nothing")
    func otherUnsupported() async throws {
        let (pool, _) = try await SharedReadsTests.sharedPool(size: 1)
        let (group, loop) = try await SharedReadsTests.preparedLoop(pool)
        let executor = EventLoopTaskExecutor(eventLoop: loop)
        // A sequence counts the tries: nextval is not undone by the error.
        try await pool.withConnection { connection in
            try await connection.execute("""
                CREATE SEQUENCE tries;
                CREATE FUNCTION unsupported() RETURNS int LANGUAGE plpgsql AS $$
                BEGIN PERFORM nextval('tries'); RAISE EXCEPTION 'not here' USING ERRCODE = 'feature_not_supported'; END $$
                """)
        }
        let onPool = await Task { try await pool.withConnection { try await $0.query("SELECT unsupported() AS v") } }.result
        let shared = await Task(executorPreference: executor) { try await pool.read("SELECT unsupported() AS v") }.result
        for outcome in [onPool, shared] {
            guard case .failure(let error) = outcome else {
                Issue.record("unsupported() answered")
                continue
            }
            #expect((error as? StoreError)?.sqlState == "0A000")
            #expect((error as? StoreError)?.stalePlan == false)
        }
        let tries = try await pool.withConnection { try await $0.query("SELECT last_value AS n FROM tries").first?.require("n", as: Int.self) }
        #expect(tries == 2, "each call ran it once")
        #expect(pool.planEpoch.current == 0, "no connection dropped its statements")
        await pool.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("one schema change moves the epoch once, however many statements in flight meet it")
    func epochOncePerChange() {
        let epoch = PlanEpoch()
        epoch.advance(from: 0)
        epoch.advance(from: 0)
        #expect(epoch.current == 1)
        epoch.advance(from: 1)
        #expect(epoch.current == 2)
    }

    @Test("a DEALLOCATE ALL skipped because a read before it in its batch failed is sent again before the next read", .timeLimit(.minutes(2)))
    func dropSkipped() async throws {
        let shelf = try await SharedShelf.start()
        let (pool, executor) = (shelf.pool, shelf.executor)
        #expect(try await shelf.preparedOnShared() == 1)
        let served = pool.sharedReadsServed

        // One batch: a read that fails, then (the epoch moved meanwhile) DEALLOCATE ALL and a
        // read, both skipped. Started inside one loop turn, so that no sync comes between them.
        let (failed, skipped) = try await shelf.loop.submit {
            let failed = Task(executorPreference: executor) { try await pool.read("SELECT (1 / 0)::int8 AS v") }
            let skipped = Task(executorPreference: executor) { () -> Int64? in
                pool.planEpoch.advance(from: 0)
                return try await pool.read("SELECT 2::int8 AS v").first?.require("v", as: Int64.self)
            }
            return (failed, skipped)
        }.get()
        let failure = await #expect(throws: StoreError.self) { try await failed.value }
        #expect(failure?.sqlState == "22012")
        #expect(try await skipped.value == 2, "run again on a connection of its own")
        #expect(pool.sharedReadsServed == served, "skipped in the shared pipeline, as the DEALLOCATE ALL before it was")
        #expect(try await shelf.preparedOnShared() == 0, "the statement prepared before the epoch moved is gone")
        try await shelf.stop()
    }
}

/// A pool whose one event loop has its shared connection open, a table `shelf` of one row, and
/// `SELECT * FROM shelf` prepared on that shared connection.
private struct SharedShelf {
    let pool: PostgresPool
    let group: MultiThreadedEventLoopGroup
    let loop: any EventLoop
    let sharedPID: Int?

    var executor: EventLoopTaskExecutor { EventLoopTaskExecutor(eventLoop: loop) }

    static func start() async throws -> SharedShelf {
        let (pool, _) = try await SharedReadsTests.sharedPool(size: 1)
        let (group, loop) = try await SharedReadsTests.preparedLoop(pool)
        try await pool.withConnection { try await $0.execute("CREATE TABLE shelf (a int); INSERT INTO shelf VALUES (1)") }
        let reader = SharedShelf(pool: pool, group: group, loop: loop, sharedPID: nil)
        let pid = try await reader.onLoop("SELECT pg_backend_pid() AS pid").first?.require("pid", as: Int.self)
        _ = try await reader.onLoop("SELECT * FROM shelf")
        return SharedShelf(pool: pool, group: group, loop: loop, sharedPID: pid)
    }

    /// A read from a task on the loop: on its shared connection when it can take it.
    func onLoop(_ sql: SQL) async throws -> Rows {
        let pool = self.pool
        return try await Task(executorPreference: executor) { try await pool.read(sql) }.value
    }

    /// How many copies of `SELECT * FROM shelf` the shared connection holds prepared.
    func preparedOnShared() async throws -> Int? {
        let row = try await onLoop(
            "SELECT count(*) AS n, pg_backend_pid() AS pid FROM pg_prepared_statements WHERE statement = 'SELECT * FROM shelf'"
        ).first
        #expect(try row?.require("pid", as: Int.self) == sharedPID, "counted on the shared connection")
        return try row?.require("n", as: Int.self)
    }

    func stop() async throws {
        await pool.shutdown()
        try await group.shutdownGracefully()
    }
}

