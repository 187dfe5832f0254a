import Foundation
import MetricsTestKit
import NIOCore
import NIOPosix
import PassionRPC
@testable import PassionStore
import Testing

/// A shared read connection when its caller goes away, when the server cancels a read, and when
/// the connection breaks.
@Suite("shared reads cancelled, and shared connections broken")
struct SharedReadsFailoverTests {
    @Test("a read whose caller is cancelled is told at once; its answer is dropped, and the next read gets its own", .timeLimit(.minutes(2)))
    func cancelledRead() async throws {
        let shared = try await SharedLoop.start()
        defer { Task { await shared.pool.shutdown() } }
        let admin = try await shared.admin()
        let blocked = try await SharedReadsTests.startBlockedRead(shared.pool, admin: admin, on: shared.executor)
        let queued = shared.startRead("SELECT 2::int8 AS v")
        // The loop runs the queued read's task up to its wait before this.
        try await shared.loop.submit {}.get()
        queued.cancel()
        guard case .failure(let error) = await queued.result else {
            Issue.record("the cancelled read was answered while the read before it still ran")
            return
        }
        #expect((error as? RPCError)?.code == .cancelled, "got \(error)")
        try await admin.query("SELECT pg_advisory_unlock(1)")
        try await blocked.value
        #expect(try await shared.value("SELECT 3::int8 AS v") == 3, "the dropped answer went to nobody")
        // Once the dropped read was the oldest, the server was asked to cancel it. That request
        // travels on a connection of its own and can land on the next read instead, which then
        // runs again on a pool connection (57014, by design): at most one, never a wrong answer.
        // Seen in a loaded CI run; the count is not up to the test.
        #expect(shared.pool.openConnections <= 1)
        await shared.pool.shutdown()
        try await shared.group.shutdownGracefully()
    }

    @Test("a read whose caller is cancelled while the server runs it is cancelled there: the read behind it is answered while the lock it waited for is still held", .timeLimit(.minutes(2)))
    func cancelledRunningRead() async throws {
        let shared = try await SharedLoop.start()
        defer { Task { await shared.pool.shutdown() } }
        let admin = try await shared.admin()
        // startBlockedRead's handshake, the blocked read also holding lock 3 until its implicit
        // transaction ends: the admin can then wait for that in the database.
        try await admin.query("SELECT pg_advisory_lock(1)")
        _ = try await shared.startRead("SELECT pg_advisory_lock(2)::text AS locked").result.get()
        let blocked = shared.startRead(
            "SELECT pg_advisory_lock(1)::text AS locked FROM (SELECT pg_advisory_xact_lock(3), pg_advisory_unlock(2) OFFSET 0) AS taken")
        try await admin.query("SELECT pg_advisory_lock(2)")
        let queued = shared.startRead("SELECT 2::int8 AS v")
        try await shared.loop.submit {}.get()
        blocked.cancel()
        guard case .failure(let error) = await blocked.result else {
            Issue.record("the blocked read was answered")
            return
        }
        #expect((error as? RPCError)?.code == .cancelled, "got \(error)")
        // Lock 3 comes free when the server has stopped the read; without the cancel the wait
        // ends in 55P03 instead, and the test fails rather than hangs. Not on the admin's
        // connection: it holds lock 1, and waiting there would be a deadlock the server breaks.
        let waiter = try await shared.admin()
        try await waiter.query("SET lock_timeout = '60s'")
        try await waiter.query("SELECT pg_advisory_xact_lock(3)")
        #expect(try await queued.value == 2)
        #expect(shared.pool.openConnections == 0, "the read behind it stayed on the shared connection")
        try await admin.query("SELECT pg_advisory_unlock(1)")
        await shared.pool.shutdown()
        try await shared.group.shutdownGracefully()
    }

    @Test("a read the server cancels (57014) while its caller still waits runs again on a connection of its own", .timeLimit(.minutes(2)))
    func cancelledByTheServer() async throws {
        let shared = try await SharedLoop.start()
        defer { Task { await shared.pool.shutdown() } }
        // As a cancel meant for the read before it would: the shared backend alone cancels
        // anything that runs over 1 ms. On a busy machine that can be the read's prepare (its
        // first use of the text), otherwise the read itself: either way it runs again.
        _ = try await shared.value("SELECT length(set_config('statement_timeout', '1ms', false))::int8 AS v")
        let served = shared.pool.sharedReadsServed
        #expect(try await shared.value("SELECT 7::int8 AS v FROM (SELECT pg_sleep(0.05) OFFSET 0) AS slept") == 7)
        // A text whose prepare alone takes longer: 50,000 constants to parse.
        let constants = (1...50_000).map(String.init).joined(separator: ", ")
        #expect(try await shared.value(SQL(unsafeSQL: "SELECT 8::int8 AS v WHERE 1 IN (\(constants))")) == 8)
        #expect(shared.pool.sharedReadsServed == served, "answered elsewhere")
        #expect(shared.pool.openConnections == 1)
        await shared.pool.shutdown()
        try await shared.group.shutdownGracefully()
    }

    @Test("a shared connection's backend killed while reads wait: they run again on connections of their own; a new one is shared next; the metrics count it all", .timeLimit(.minutes(2)))
    func backendKilled() async throws {
        let metrics = TestMetrics()
        let shared = try await SharedLoop.start(metrics: metrics)
        let pool = shared.pool
        defer { Task { await pool.shutdown() } }
        let admin = try await shared.admin()
        let pid = try await shared.value("SELECT pg_backend_pid()::int8 AS v")
        let blocked = try await SharedReadsTests.startBlockedRead(pool, admin: admin, on: shared.executor)
        let queued = shared.startRead("SELECT 2::int8 AS v")
        try await shared.loop.submit {}.get()
        let served = pool.sharedReadsServed
        try await admin.query("SELECT pg_terminate_backend(\(try #require(pid)))")
        // Run again on a connection of its own, the blocked read waits for the lock anew.
        #expect(try await queued.value == 2)
        try await admin.query("SELECT pg_advisory_unlock(1)")
        try await blocked.value
        #expect(pool.sharedReadsServed == served, "both reads were answered elsewhere")
        #expect(pool.openConnections >= 1)
        try await SharedReadsTests.prepare(pool, shared.loop)
        let next = try await shared.value("SELECT pg_backend_pid()::int8 AS v")
        #expect(next != nil && next != pid, "a new shared connection")
        #expect(pool.sharedReadsServed == served + 1)

        pool.publishGauges()
        #expect(try metrics.expectGauge("passion_db_shared_read_connections").lastValue == 1)
        // pid, lock 2 and the new pid on shared connections; the blocked and the queued read on their own.
        #expect(try metrics.expectCounter("passion_db_reads_total", [("connection", "shared")]).totalValue == 3)
        #expect(try metrics.expectCounter("passion_db_reads_total", [("connection", "own")]).totalValue == 2)
        #expect(try metrics.expectCounter("passion_db_connections_discarded_total").totalValue == 1)
        let opened = try metrics.expectCounter("passion_db_connections_opened_total").totalValue
        #expect(opened == 2 + Int64(pool.openConnections), "two shared connections besides the pool's")
        await shared.pool.shutdown()
        try await shared.group.shutdownGracefully()
    }

    @Test("after its shared connection breaks, a loop's reads use connections of their own until sharedReadRetry has passed", .timeLimit(.minutes(2)))
    func brokenWaitsToReconnect() async throws {
        let shared = try await SharedLoop.start(retry: .seconds(3_600))
        defer { Task { await shared.pool.shutdown() } }
        let admin = try await shared.admin()
        let pid = try await shared.value("SELECT pg_backend_pid()::int8 AS v")
        // Waits until the backend has gone: the next read finds the connection broken.
        try await admin.query("SELECT pg_terminate_backend(\(try #require(pid)), 60000)")
        let served = shared.pool.sharedReadsServed
        for n in Int64(1)...3 {
            #expect(try await shared.value("SELECT \(n)::int8 AS v") == n)
        }
        await shared.pool.sharedReads.prepare(shared.loop)
        #expect(shared.pool.sharedReadsServed == served, "every read ran on a connection of its own")
        #expect(shared.pool.sharedReads.openCount == 0, "no new shared connection within the hour")
        await shared.pool.shutdown()
        try await shared.group.shutdownGracefully()
    }
}

/// A pool on a fresh database (see `SharedReadsTests.sharedPool`) and a one-thread event loop
/// whose shared connection is open.
struct SharedLoop {
    let pool: PostgresPool
    let databaseName: String
    let group: MultiThreadedEventLoopGroup
    let loop: any EventLoop

    static func start(retry: Duration = .zero, metrics: TestMetrics? = nil) async throws -> SharedLoop {
        let (pool, name) = try await SharedReadsTests.sharedPool(size: 2, retry: retry, metrics: metrics)
        let (group, loop) = try await SharedReadsTests.preparedLoop(pool)
        return SharedLoop(pool: pool, databaseName: name, group: group, loop: loop)
    }

    var executor: EventLoopTaskExecutor { EventLoopTaskExecutor(eventLoop: loop) }

    /// Another connection to the same database: for locks, and to end the shared backend.
    func admin() async throws -> PostgresConnection {
        try await LoopReadinessTests.admin(of: databaseName)
    }

    /// The int8 column `v` of a read from a task on the loop.
    func value(_ sql: SQL) async throws -> Int64? {
        try await SharedReadsTests.value(pool, sql, on: executor)
    }

    /// Starts a read from a task on the loop; its int8 column `v`, if it has one.
    func startRead(_ sql: SQL) -> Task<Int64?, any Error> {
        let pool = self.pool
        return Task(executorPreference: executor) {
            let row = try await pool.read(sql).first
            return row?.columns.contains("v") == true ? try row?.require("v", as: Int64.self) : nil
        }
    }
}
