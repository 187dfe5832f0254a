import Foundation
import NIOCore
import NIOPosix
import PassionRPC
import PassionRPCServer
@testable import PassionStore
import PassionTestSupport
import Testing

/// Statements sent from tasks on SwiftNIO event loops (as the server's handlers are) wait for
/// their answers on that loop, through a kernel AIO poll that signals the loop's eventfd.
@Suite("answers awaited on the caller's event loop")
struct LoopReadinessTests {
    @Test("statements from tasks on two loops, many in flight, are answered on their loops with their own rows", .timeLimit(.minutes(2)))
    func answeredOnTheirLoops() async throws {
        let (pool, _) = try await TestDatabase.freshPool(size: 6)
        defer { Task { await pool.shutdown() } }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let loops = Array(group.makeIterator())
        for loop in loops { await LoopReadiness.prepare(loop) }
        try #require(loops.allSatisfy(LoopReadiness.isWatching), "this kernel grants no AIO poll")
        let workers = 12
        let rounds = 20
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for worker in 0..<workers {
                tasks.addTask(executorPreference: EventLoopTaskExecutor(eventLoop: loops[worker % loops.count])) {
                    for round in 0..<rounds {
                        let value = worker * 1_000 + round
                        // Some answers come late, so several are pending on a loop at once.
                        let delay = round % 3 == 0 ? "0.003" : "0"
                        let row = try await pool.withConnection { connection in
                            try await connection.query("SELECT \(Int64(value)) + 1 AS next, pg_sleep(\(delay)::float8)::text AS slept").first
                        }
                        #expect(try row?.require("next", as: Int64.self) == Int64(value + 1))
                    }
                }
            }
            try await tasks.waitForAll()
        }
        // Every statement waited at least once, and each wait was the loop's, not the poller's.
        let answered = loops.map(LoopReadiness.answered(on:)).reduce(0, +)
        #expect(answered >= workers * rounds, "\(answered) waits answered on the loops")
        await pool.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a transaction from an event loop runs there: its answers come on the loop; a failing one commits nothing", .timeLimit(.minutes(2)))
    func transactionOnTheLoop() async throws {
        let (pool, _) = try await TestDatabase.freshPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        await LoopReadiness.prepare(loop)
        try #require(LoopReadiness.isWatching(loop), "this kernel grants no AIO poll")
        try await pool.withConnection { try await $0.execute("CREATE TABLE marks (n int8 PRIMARY KEY)") }
        let executor = EventLoopTaskExecutor(eventLoop: loop)
        let before = LoopReadiness.answered(on: loop)
        let total = try await Task(executorPreference: executor) {
            try await pool.transaction { connection in
                for n in 1...5 { try await connection.query("INSERT INTO marks (n) VALUES (\(Int64(n)))") }
                #expect(loop.inEventLoop, "the body runs on the caller's loop")
                return try await connection.query("SELECT sum(n)::int8 AS total FROM marks").first?.require("total", as: Int64.self)
            }
        }.value
        #expect(total == 15)
        #expect(LoopReadiness.answered(on: loop) - before >= 6, "each statement's answer came on the loop")
        let failed = await Task(executorPreference: executor) {
            try await pool.transaction { connection in
                try await connection.query("INSERT INTO marks (n) VALUES (6)")
                try await connection.query("INSERT INTO marks (n) VALUES (1)")  // a duplicate key
            }
        }.result
        guard case .failure(let error) = failed else {
            Issue.record("a duplicate key committed")
            return
        }
        #expect((error as? StoreError)?.sqlState == "23505", "got \(error)")
        let count = try await pool.withConnection { try await $0.query("SELECT count(*)::int8 AS n FROM marks").first?.require("n", as: Int64.self) }
        #expect(count == 5, "the failed transaction's first insert was rolled back")
        await pool.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a loop that shuts down leaves no watcher behind; a new loop gets its own", .timeLimit(.minutes(2)))
    func loopShutdown() async throws {
        let (pool, _) = try await TestDatabase.freshPool(size: 1)
        defer { Task { await pool.shutdown() } }
        let first = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let firstLoop = first.next()
        await LoopReadiness.prepare(firstLoop)
        try #require(LoopReadiness.isWatching(firstLoop), "this kernel grants no AIO poll")
        let one = try await Task(executorPreference: EventLoopTaskExecutor(eventLoop: firstLoop)) {
            try await pool.withConnection { try await $0.query("SELECT 1 AS one").first?.require("one", as: Int.self) }
        }.value
        #expect(one == 1)
        #expect(LoopReadiness.answered(on: firstLoop) >= 1)
        try await first.shutdownGracefully()
        #expect(!LoopReadiness.isWatching(firstLoop))

        let second = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let secondLoop = second.next()
        await LoopReadiness.prepare(secondLoop)
        let two = try await Task(executorPreference: EventLoopTaskExecutor(eventLoop: secondLoop)) {
            try await pool.withConnection { try await $0.query("SELECT 2 AS two").first?.require("two", as: Int.self) }
        }.value
        #expect(two == 2)
        #expect(LoopReadiness.answered(on: secondLoop) >= 1)
        try await second.shutdownGracefully()
    }

    @Test("a loop shut down while a statement waits on it: the caller gets an error, the pool drops the busy connection", .timeLimit(.minutes(1)))
    func loopShutDownWhileWaiting() async throws {
        let (pool, name) = try await TestDatabase.freshPool(size: 1)
        defer { Task { await pool.shutdown() } }
        let (group, loop) = try await Self.watchedLoop()
        let admin = try await Self.admin(of: name)
        let blocked = try await Self.startBlockedStatement(pool, admin: admin, on: EventLoopTaskExecutor(eventLoop: loop))
        try await group.shutdownGracefully()
        guard case .failure(let error) = await blocked.result else {
            Issue.record("the statement finished on a loop that shut down")
            return
        }
        #expect((error as? StoreError)?.rpcError.code == .unavailable, "got \(error)")
        // The connection still had the statement in progress: the next call gets a new one.
        let one = try await pool.withConnection { try await $0.query("SELECT 1 AS one").first?.require("one", as: Int.self) }
        #expect(one == 1)
    }

    @Test("a backend killed while its statement waits on a loop: the caller gets UNAVAILABLE, the pool serves on", .timeLimit(.minutes(2)))
    func backendKilledWhileWaiting() async throws {
        let (pool, name) = try await TestDatabase.freshPool(size: 1)
        defer { Task { await pool.shutdown() } }
        let (group, loop) = try await Self.watchedLoop()
        let admin = try await Self.admin(of: name)
        let executor = EventLoopTaskExecutor(eventLoop: loop)
        let pid = try await Task(executorPreference: executor) {
            try await pool.withConnection { try await $0.query("SELECT pg_backend_pid() AS pid").first?.require("pid", as: Int.self) }
        }.value
        let blocked = try await Self.startBlockedStatement(pool, admin: admin, on: executor)
        let before = LoopReadiness.answered(on: loop)
        try await admin.query("SELECT pg_terminate_backend(\(pid))")
        let outcome = await blocked.result
        guard case .failure(let error) = outcome else {
            Issue.record("the statement outlived its backend")
            return
        }
        #expect((error as? StoreError)?.rpcError.code == .unavailable, "got \(error)")
        #expect(LoopReadiness.answered(on: loop) > before, "the hang-up was seen on the loop")
        let next = try await Task(executorPreference: executor) {
            try await pool.withConnection { try await $0.query("SELECT pg_backend_pid() AS pid").first?.require("pid", as: Int.self) }
        }.value
        #expect(next != nil && next != pid)
        await pool.shutdown()
        try await group.shutdownGracefully()
    }

    /// A one-thread event loop group whose loop watches its statements' answers.
    static func watchedLoop() async throws -> (MultiThreadedEventLoopGroup, any EventLoop) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        await LoopReadiness.prepare(loop)
        try #require(LoopReadiness.isWatching(loop), "this kernel grants no AIO poll")
        return (group, loop)
    }

    /// A connection of its own to the database `name`, outside the pool under test.
    static func admin(of name: String) async throws -> PostgresConnection {
        let postgres = try await TestDatabase.shared()
        return try PostgresConnection(conninfo: "host=\(postgres.socketDirectory) port=5432 user=postgres dbname=\(name)")
    }

    /// Starts, from a task on `executor`, a statement that waits in the database for an advisory
    /// lock `admin` holds, and returns once the database runs it. The database says so itself,
    /// with no polling and no clock: the statement first releases a second lock, which `admin`
    /// waits to take.
    static func startBlockedStatement(
        _ pool: PostgresPool, admin: PostgresConnection, on executor: EventLoopTaskExecutor
    ) async throws -> Task<Void, any Error> {
        try await admin.query("SELECT pg_advisory_lock(1)")
        let (holding, held) = AsyncStream.makeStream(of: Void.self)
        let statement = Task(executorPreference: executor) {
            defer { held.finish() }
            try await pool.withConnection { connection in
                try await connection.query("SELECT pg_advisory_lock(2)")
                held.yield()
                // OFFSET 0 keeps the release a step of its own, before the wait.
                try await connection.query("SELECT pg_advisory_lock(1) FROM (SELECT pg_advisory_unlock(2) OFFSET 0) AS released")
            }
        }
        for await _ in holding { break }
        try await admin.query("SELECT pg_advisory_lock(2)")
        return statement
    }
}
