import Foundation
import PassionRPCServer
import PassionStore
import PassionTestSupport
import Synchronization
import Testing

@Suite("PostgreSQL connection and pool")
struct PoolTests {
    @Test("every supported type round-trips, NULLs included")
    func typesRoundTrip() async throws {
        let (pool, _) = try await TestDatabase.freshPool()
        defer { Task { await pool.shutdown() } }
        let id = UUID()
        let when = Date(timeIntervalSince1970: 1_764_000_000.123456)
        let day = LocalDate(year: 2024, month: 2, day: 29)
        let row = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT \(id)::uuid AS id, \("héllo ✓ 😈")::text AS text, \(Int16(-7))::int2 AS small,
                       \(Int32(2_000_000_000))::int4 AS int, \(Int64.max)::int8 AS big, \(true)::bool AS flag,
                       \(day)::date AS day, \(when)::timestamptz AS at, \(JSONB(json: #"{"a": [1, "x"]}"#))::jsonb AS doc,
                       \(InetAddress("2001:db8::1"))::inet AS peer, \(["a", "b,c", "d\"e", ""])::text[] AS tags,
                       \(Bytes([0, 1, 254, 255]))::bytea AS raw, \(Optional<String>.none)::text AS nothing
                """).first
        }
        let result = try #require(row)
        #expect(try result.require("id", as: UUID.self) == id)
        #expect(try result.require("text", as: String.self) == "héllo ✓ 😈")
        #expect(try result.require("small", as: Int16.self) == -7)
        #expect(try result.require("int", as: Int32.self) == 2_000_000_000)
        #expect(try result.require("big", as: Int64.self) == .max)
        #expect(try result.require("flag", as: Bool.self))
        #expect(try result.require("day", as: LocalDate.self) == day)
        #expect(abs(try result.require("at", as: Date.self).timeIntervalSince(when)) < 0.000_001)
        #expect(try result.require("doc", as: JSONB.self).json == #"{"a": [1, "x"]}"#)
        #expect(try result.require("peer", as: InetAddress.self).address == "2001:db8::1")
        #expect(try result.require("tags", as: [String].self) == ["a", "b,c", "d\"e", ""])
        #expect(try result.require("raw", as: Bytes.self).bytes == [0, 1, 254, 255])
        #expect(try result.decode("nothing", as: String.self) == nil)
        // Instants inside JSON (to_jsonb) parse too, in any offset.
        let json = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT to_jsonb(\(when)::timestamptz) #>> '{}' AS utc,
                       to_jsonb((\(when)::timestamptz AT TIME ZONE 'Asia/Kolkata')::text || '+05:30') #>> '{}' AS india
                """).first
        }
        #expect(try json?.require("utc", as: String.self).contains("T") == true)
        #expect(abs(try Date(postgresText: json?.require("utc", as: String.self) ?? "").timeIntervalSince(when)) < 0.000_001)
        #expect(abs(try Date(postgresText: json?.require("india", as: String.self) ?? "").timeIntervalSince(when)) < 0.000_001)
        #expect(throws: PostgresDecodingError.self) { try Date(postgresText: "2026-11-25") }
    }

    @Test("a parameter that looks like SQL injection is stored verbatim")
    func injectionIsData() async throws {
        let (pool, _) = try await TestDatabase.freshPool()
        defer { Task { await pool.shutdown() } }
        let hostile = "Robert'); DROP TABLE notes; -- \\ \" $1 ${x} \u{0}".replacingOccurrences(of: "\u{0}", with: "")
        let stored = try await pool.withConnection { connection -> String? in
            try await connection.execute("CREATE TABLE notes (body text NOT NULL)")
            try await connection.query("INSERT INTO notes (body) VALUES (\(hostile))")
            return try await connection.query("SELECT body FROM notes").first?.decode("body")
        }
        #expect(stored == hostile)
        let count = try await pool.withConnection { try await $0.query("SELECT count(*) AS n FROM notes").first?.decode("n", as: Int.self) }
        #expect(count == 1)
    }

    @Test("constraint violations map to statuses without SQL or data in the message")
    func constraintMapping() async throws {
        let (pool, _) = try await TestDatabase.freshPool()
        defer { Task { await pool.shutdown() } }
        try await pool.withConnection { connection in
            try await connection.execute("""
                CREATE TABLE parents (id int PRIMARY KEY);
                CREATE TABLE children (
                    id int PRIMARY KEY,
                    parent int CONSTRAINT children_parent_fk REFERENCES parents(id),
                    priority int NOT NULL CONSTRAINT children_priority_range CHECK (priority BETWEEN 1 AND 5),
                    email text CONSTRAINT children_email_unique UNIQUE);
                INSERT INTO parents VALUES (1);
                INSERT INTO children VALUES (1, 1, 3, 'secret@example.com');
                """)
        }
        func failure(_ sql: SQL) async -> RPCError? {
            do {
                try await pool.withConnection { try await $0.query(sql) }
                return nil
            } catch let error as StoreError {
                return error.rpcError
            } catch {
                return nil
            }
        }
        let duplicate = await failure("INSERT INTO children VALUES (2, 1, 3, \("secret@example.com"))")
        #expect(duplicate?.code == .alreadyExists)
        #expect(duplicate?.message.contains("secret") == false)
        let check = await failure("INSERT INTO children VALUES (3, 1, \(9), NULL)")
        #expect(check?.code == .invalidArgument)
        // The schema's names stay in the server: the caller learns the kind of violation only.
        #expect(check?.details?.fields["constraint"] == nil && check?.message.contains("children_priority_range") == false)
        let notNull = await failure("INSERT INTO children (id) VALUES (4)")
        #expect(notNull?.code == .invalidArgument)
        #expect(notNull?.details?.fields["field"] == "priority")
        let foreignKey = await failure("INSERT INTO children VALUES (5, \(42), 1, NULL)")
        #expect(foreignKey?.code == .failedPrecondition)
        let badValue = await failure("SELECT \("not a number")::int")
        #expect(badValue?.code == .invalidArgument)
        #expect(badValue?.message.contains("not a number") == false)
    }

    @Test("serialization failures are retried until every transaction commits")
    func serializationRetry() async throws {
        // 30 transactions share 6 connections, each retried up to 100 times: on a loaded machine
        // a caller can wait longer than the default 2 s for a connection (a fresh-machine run
        // failed so), and the wait bound has tests of its own.
        let (pool, _) = try await TestDatabase.freshPool(size: 6) {
            $0.transactionAttempts = 100
            $0.acquireTimeout = .seconds(600)
        }
        defer { Task { await pool.shutdown() } }
        try await pool.withConnection { try await $0.execute("CREATE TABLE counter (n int NOT NULL); INSERT INTO counter VALUES (0)") }
        let attempts = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<30 {
                group.addTask {
                    try await pool.transaction(isolation: "SERIALIZABLE") { connection in
                        attempts.increment()
                        let current = try await connection.query("SELECT n FROM counter").first?.require("n", as: Int.self) ?? 0
                        try await connection.query("UPDATE counter SET n = \(current + 1)")
                    }
                }
            }
            try await group.waitForAll()
        }
        let final = try await pool.withConnection { try await $0.query("SELECT n FROM counter").first?.decode("n", as: Int.self) }
        #expect(final == 30)
        #expect(attempts.value > 30, "no transaction was ever retried, so the retry path went untested")
    }

    /// An hour's sleep: a deadline that did not apply is a hang the time limit reports, not a
    /// wall-clock assertion a loaded machine can break.
    @Test("the remaining deadline becomes statement_timeout: DEADLINE_EXCEEDED, fast", .timeLimit(.minutes(1)))
    func deadlineBecomesStatementTimeout() async throws {
        let (pool, _) = try await TestDatabase.freshPool()
        defer { Task { await pool.shutdown() } }
        do {
            try await pool.transaction(deadline: .now + .milliseconds(150)) { try await $0.execute("SELECT pg_sleep(3600)") }
            Issue.record("the sleep finished")
        } catch let error as StoreError {
            #expect(error.rpcError.code == .deadlineExceeded)
        }
        // The connection went back to the pool in a usable state.
        #expect(try await pool.withConnection { try await $0.query("SELECT 1 AS one").count } == 1)
    }

    @Test("a prepared first statement of a transaction gets the deadline too (it travels with BEGIN)")
    func deadlineOnPipelinedStatement() async throws {
        let (pool, _) = try await TestDatabase.freshPool(size: 1)
        defer { Task { await pool.shutdown() } }
        do {
            try await pool.transaction(deadline: .now + .milliseconds(150)) { try await $0.query("SELECT pg_sleep(\(5))") }
            Issue.record("the sleep finished")
        } catch let error as StoreError {
            #expect(error.rpcError.code == .deadlineExceeded)
        }
        // The one connection is back, outside any transaction: a write commits on its own.
        try await pool.withConnection { try await $0.execute("CREATE TABLE after_timeout (n int)") }
        #expect(try await pool.withConnection { try await $0.query("SELECT count(*) AS n FROM after_timeout").first?.decode("n", as: Int.self) } == 0)
    }

    @Test("a transaction whose first or later statement fails commits nothing; the connection stays usable")
    func failedTransactionCommitsNothing() async throws {
        let (pool, _) = try await TestDatabase.freshPool(size: 1)
        defer { Task { await pool.shutdown() } }
        try await pool.withConnection { try await $0.execute("CREATE TABLE items (id int PRIMARY KEY, note text)") }
        try await pool.withConnection { try await $0.query("INSERT INTO items VALUES (\(1), \("kept"))") }
        // First statement fails (it was sent in the same round trip as BEGIN).
        await #expect(throws: StoreError.self) {
            try await pool.transaction { try await $0.query("INSERT INTO items VALUES (\(1), \("duplicate"))") }
        }
        // A later statement fails after an earlier one succeeded.
        await #expect(throws: StoreError.self) {
            try await pool.transaction { connection in
                try await connection.query("INSERT INTO items VALUES (\(2), \("rolled back"))")
                try await connection.query("INSERT INTO items VALUES (\(1), \("duplicate"))")
            }
        }
        // The body throws a Swift error after writing.
        struct Abort: Error {}
        await #expect(throws: Abort.self) {
            try await pool.transaction { connection in
                try await connection.query("INSERT INTO items VALUES (\(3), \("rolled back"))")
                throw Abort()
            }
        }
        let notes = try await pool.withConnection { connection in
            try await connection.query("SELECT note FROM items ORDER BY id").map { try $0.require("note", as: String.self) }
        }
        #expect(notes == ["kept"])
        // An empty transaction costs nothing and fails nothing; a committed one is visible.
        try await pool.transaction { _ in }
        try await pool.transaction { try await $0.query("INSERT INTO items VALUES (\(4), \("committed"))") }
        #expect(try await pool.withConnection { try await $0.query("SELECT count(*) AS n FROM items").first?.decode("n", as: Int.self) } == 2)
    }

    /// A minute's query: a cancel that does not reach PostgreSQL lets it finish, which the test
    /// reports as not cancelled; no clock is asserted.
    @Test("cancelling the calling task cancels the running query")
    func cancellation() async throws {
        let (pool, name) = try await TestDatabase.freshPool(size: 1)
        defer { Task { await pool.shutdown() } }
        // The watcher first: making its database takes long on a loaded machine, and the query
        // must still be running when the cancel comes.
        let (watcher, _) = try await TestDatabase.freshPool(size: 1)
        defer { Task { await watcher.shutdown() } }
        let task = Task { try await pool.withConnection { try await $0.execute("SELECT pg_sleep(60)") } }
        // Cancel once the query runs (on a loaded machine that can take a while), not before.
        let patience = ContinuousClock.now + .seconds(40)
        while ContinuousClock.now < patience {
            let running = try await watcher.withConnection { connection in
                try await connection.query("""
                    SELECT count(*) AS n FROM pg_stat_activity WHERE datname = \(name) AND query LIKE 'SELECT pg_sleep%' AND state = 'active'
                    """).first?.require("n", as: Int.self)
            }
            if running == 1 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        task.cancel()
        let result = await task.result
        guard case .failure(let error) = result else {
            Issue.record("the query was not cancelled")
            return
        }
        #expect((error as? RPCError)?.code == .cancelled, "got \(error)")
        #expect(try await pool.withConnection { try await $0.query("SELECT 1 AS one").count } == 1)
    }

    /// Holds every connection of `pool` until `release` is called.
    final class Holders: Sendable {
        final class Count: Sendable {
            let value = Mutex(0)
        }

        private let gate = AsyncStream.makeStream(of: Void.self)
        private let tasks: [Task<Void, any Error>]
        private let holding = Count()

        init(_ pool: PostgresPool, count: Int) {
            let (gate, holding) = (self.gate.stream, self.holding)
            tasks = (0..<count).map { _ in
                Task {
                    try await pool.withConnection { _ in
                        holding.value.withLock { $0 += 1 }
                        for await _ in gate {}
                    }
                }
            }
        }

        /// Connections held so far.
        var held: Int { holding.value.withLock { $0 } }

        func release() async throws {
            gate.continuation.finish()
            for task in tasks { try await task.value }
        }
    }

    /// Waits (yielding, no sleep) until `condition` holds; the test's time limit cancels a wait
    /// that never ends (a holder that could not get its connection).
    static func until(_ condition: () -> Bool) async throws {
        while !condition() {
            try Task.checkCancellation()
            await Task.yield()
        }
    }

    @Test("an exhausted pool makes a caller wait: it gets the first connection given back", .timeLimit(.minutes(1)))
    func exhaustionWaits() async throws {
        let (pool, _) = try await TestDatabase.freshPool(size: 2) { $0.acquireTimeout = .seconds(60) }
        defer { Task { await pool.shutdown() } }
        let holders = Holders(pool, count: 2)
        try await Self.until { holders.held == 2 }
        let waiter = Task { try await pool.withConnection { try await $0.query("SELECT 1 AS one").count } }
        try await Self.until { pool.waitingCallers == 1 }
        try await holders.release()
        #expect(try await waiter.value == 1)
        #expect(pool.waitingCallers == 0)
        #expect(pool.openConnections <= 2)
    }

    @Test("a caller that waits past the bound gets RESOURCE_EXHAUSTED POOL_EXHAUSTED; the pool serves on", .timeLimit(.minutes(1)))
    func exhaustionFails() async throws {
        let (pool, _) = try await TestDatabase.freshPool(size: 2) { $0.acquireTimeout = .milliseconds(200) }
        defer { Task { await pool.shutdown() } }
        let holders = Holders(pool, count: 2)
        try await Self.until { holders.held == 2 }
        // Three waiters at once: the pool's one sweeper fails each at its deadline.
        let waiters = (0..<3).map { _ in Task { try await pool.withConnection { try await $0.execute("SELECT 1") } } }
        for waiter in waiters {
            let result = await waiter.result
            guard case .failure(let error as RPCError) = result else {
                Issue.record("got \(result) from an exhausted pool")
                continue
            }
            #expect(error.code == .resourceExhausted)
            #expect(error.details?.reason == "POOL_EXHAUSTED")
        }
        #expect(pool.waitingCallers == 0)
        try await holders.release()
        #expect(try await pool.withConnection { try await $0.query("SELECT 1 AS one").count } == 1)
        #expect(pool.openConnections <= 2)
    }

    @Test("callers on the pool's executor get connections of their own loop; others still work")
    func loopAffinity() async throws {
        let (pool, _) = try await TestDatabase.freshPool(size: 4)
        defer { Task { await pool.shutdown() } }
        // Two distinct loops (each use of `executor` returns the next loop in turn).
        let first = PostgresPool.executor
        var second = PostgresPool.executor
        while ObjectIdentifier(second as AnyObject) == ObjectIdentifier(first as AnyObject) { second = PostgresPool.executor }
        // Both loops' callers hold a connection at once, so the pool opens one for each.
        let bothHeld = Barrier(parties: 2)
        let opened = try await withThrowingTaskGroup(of: Bool.self) { group in
            for executor in [first, second] {
                group.addTask(executorPreference: executor) {
                    try await pool.withConnection { connection in
                        await bothHeld.arrive()
                        return connection.isOnCallersLoop
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(opened == [true, true], "a new connection is watched by its caller's loop")
        #expect(pool.openConnections == 2)
        // Idle now: each loop's caller takes its own loop's connection. (Checked through
        // withConnection: a transaction's body started off an event loop runs on its connection's loop, so there
        // `isOnCallersLoop` would hold whichever connection it got.)
        for executor in [second, first, second, first] {
            let own = try await Task(executorPreference: executor) {
                try await pool.withConnection { connection in
                    try await connection.query("SELECT 1 AS one")
                    return connection.isOnCallersLoop
                }
            }.value
            #expect(own)
        }
        let committed = try await Task(executorPreference: first) {
            try await pool.transaction { try await $0.query("SELECT 3 AS three").first?.require("three", as: Int.self) }
        }.value
        #expect(committed == 3)
        #expect(pool.openConnections == 2)
        // A caller elsewhere is served by any connection, its answers hopping to its executor.
        let elsewhere = try await pool.withConnection { connection in
            (try await connection.query("SELECT 2 AS two").first?.require("two", as: Int.self), connection.isOnCallersLoop)
        }
        #expect(elsewhere.0 == 2 && !elsewhere.1)
        // A transaction started off an event loop: its body runs on its connection's loop from
        // its first line, before any await (the pool hops there, not the body).
        let bodyOnItsLoop = try await pool.transaction { connection in connection.isOnCallersLoop }
        #expect(bodyOnItsLoop)
    }

    @Test("an idle connection closed by the server is replaced, not handed to the next call")
    func idleConnectionClosedByServer() async throws {
        let (pool, name) = try await TestDatabase.freshPool(size: 1)
        defer { Task { await pool.shutdown() } }
        let pid = try await pool.withConnection { try await $0.query("SELECT pg_backend_pid() AS pid").first?.require("pid", as: Int.self) }
        // Terminate the pooled (now idle) connection's backend from outside the pool.
        let postgres = try await TestDatabase.shared()
        let admin = try PostgresConnection(conninfo: "host=\(postgres.socketDirectory) port=5432 user=postgres dbname=\(name)")
        // With a timeout, pg_terminate_backend returns once the backend has exited: no guess at how long that takes.
        let terminated = try await admin.query("SELECT pg_terminate_backend(\(pid), 60000) AS done").first?.require("done", as: Bool.self)
        try #require(terminated == true)
        let next = try await pool.withConnection { try await $0.query("SELECT pg_backend_pid() AS pid").first?.require("pid", as: Int.self) }
        #expect(next != pid)
    }

    /// Timeouts of an hour make "waits instead of failing" a hang the time limit reports, with no
    /// wall-clock assertion for a loaded machine to break (it once took 11 s with the suite running).
    @Test("unreachable database: calls fail fast with UNAVAILABLE", .timeLimit(.minutes(1)))
    func unreachable() async throws {
        var configuration = PoolConfiguration(conninfo: "host=/nonexistent-\(UUID()) dbname=x user=postgres")
        configuration.connectTimeoutSeconds = 3600
        configuration.acquireTimeout = .seconds(3600)
        let pool = PostgresPool(configuration: configuration)
        defer { Task { await pool.shutdown() } }
        do {
            try await pool.withConnection { try await $0.execute("SELECT 1") }
            Issue.record("connected to nothing")
        } catch let error as RPCError {
            #expect(error.code == .unavailable)
        }
    }
}

/// Counts from many tasks.
final class Counter: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func increment() { count.withLock { $0 += 1 } }
}

/// Suspends each of `parties` callers until all have arrived.
final class Barrier: Sendable {
    private let state: Mutex<(arrived: Int, waiting: [CheckedContinuation<Void, Never>])>
    private let parties: Int

    init(parties: Int) {
        self.parties = parties
        state = Mutex((0, []))
    }

    func arrive() async {
        await withCheckedContinuation { continuation in
            let release = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                state.arrived += 1
                state.waiting.append(continuation)
                guard state.arrived == parties else { return [] }
                defer { state.waiting = [] }
                return state.waiting
            }
            for waiter in release { waiter.resume() }
        }
    }
}
