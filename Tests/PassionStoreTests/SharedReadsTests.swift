import Foundation
import MetricsTestKit
import NIOCore
import NIOPosix
import PassionRPC
import PassionRPCServer
@testable import PassionStore
import PassionTestSupport
import Testing

/// Reads from tasks on SwiftNIO event loops share one pipelined connection per loop.
@Suite("reads shared on one pipelined connection per event loop")
struct SharedReadsTests {
    @Test("reads from tasks on two loops, many in flight, each get their own rows from their loop's one connection", .timeLimit(.minutes(2)))
    func sharedPerLoop() async throws {
        let (pool, _) = try await Self.sharedPool(size: 6)
        defer { Task { await pool.shutdown() } }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let loops = Array(group.makeIterator())
        for loop in loops { try await Self.prepare(pool, loop) }
        let workers = 12
        let rounds = 20
        let backends = try await withThrowingTaskGroup(of: Set<Int>.self) { tasks in
            for worker in 0..<workers {
                tasks.addTask(executorPreference: EventLoopTaskExecutor(eventLoop: loops[worker % loops.count])) {
                    var backends: Set<Int> = []
                    for round in 0..<rounds {
                        let value = worker * 1_000 + round
                        // Some answers come late, so several reads are queued on a connection at once.
                        let delay = round % 3 == 0 ? "0.003" : "0"
                        let row = try await pool.read(
                            "SELECT \(Int64(value)) + 1 AS next, pg_backend_pid() AS pid, pg_sleep(\(delay)::float8)::text AS slept").first
                        #expect(try row?.require("next", as: Int64.self) == Int64(value + 1))
                        let pid = try row?.require("pid", as: Int.self)
                        try backends.insert(#require(pid))
                    }
                    return backends
                }
            }
            return try await tasks.reduce(into: Set<Int>()) { $0.formUnion($1) }
        }
        #expect(backends.count == loops.count, "one backend per loop answered every read: \(backends)")
        #expect(pool.sharedReadsServed == workers * rounds)
        #expect(pool.deepestSharedPipeline >= 2, "reads were queued behind each other")
        #expect(pool.openConnections == 0, "no read took a connection of its own")
        await pool.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a read that fails gets its own error; the reads queued around it get their rows; a NUL or too many parameters are refused before sending", .timeLimit(.minutes(2)))
    func failureStaysWithItsRead() async throws {
        let (pool, _) = try await Self.sharedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let (group, loop) = try await Self.preparedLoop(pool)
        let executor = EventLoopTaskExecutor(eventLoop: loop)
        let outcomes = await withTaskGroup(of: (Int, Result<Int64?, any Error>).self) { tasks in
            // As many as the connection takes at once, so that every one is shared.
            for n in 0..<SharedReads.depth {
                tasks.addTask(executorPreference: executor) {
                    do {
                        let row = try await pool.read("SELECT (100 / (\(Int64(n)) - 5))::int8 AS q, pg_sleep(0.002)::text AS slept").first
                        return (n, .success(try row?.require("q", as: Int64.self)))
                    } catch {
                        return (n, .failure(error))
                    }
                }
            }
            return await tasks.reduce(into: [Int: Result<Int64?, any Error>]()) { $0[$1.0] = $1.1 }
        }
        for n in 0..<SharedReads.depth where n != 5 {
            #expect(try outcomes[n]?.get() == Int64(100 / (n - 5)), "read \(n)")
        }
        guard case .failure(let error) = outcomes[5] else {
            Issue.record("dividing by zero answered \(String(describing: outcomes[5]))")
            return
        }
        #expect((error as? StoreError)?.sqlState == "22012", "got \(error)")
        let refused = await Task(executorPreference: executor) {
            try await pool.read("SELECT \("victim\u{0}x")::text AS name")
        }.result
        guard case .failure(let nul) = refused else {
            Issue.record("a NUL was sent")
            return
        }
        #expect((nul as? StoreError)?.sqlState == "22021", "got \(nul)")
        // One parameter more than the protocol counts: refused here, on a pool connection too.
        var tooMany = SQL.Interpolation(literalCapacity: 0, interpolationCount: 0)
        tooMany.appendLiteral("SELECT 1::int8 AS v WHERE 0 NOT IN (0")
        for n in 1...PostgresConnection.maximumParameters + 1 {
            tooMany.appendLiteral(", ")
            tooMany.appendInterpolation(Int64(n))
        }
        tooMany.appendLiteral(")")
        let overLimit = SQL(stringInterpolation: tooMany)
        for onLoop in [true, false] {
            do {
                _ = onLoop ? try await Self.value(pool, overLimit, on: executor) : try await pool.read(overLimit).first?.require("v", as: Int64.self)
                Issue.record("65,536 parameters were sent")
            } catch {
                #expect((error as? StoreError)?.sqlState == "54023", "got \(error)")
            }
        }
        // Reads after the failed one in its batch were skipped by the server and ran again on
        // connections of their own.
        #expect(pool.sharedReadsServed <= SharedReads.depth - 1)
        let served = pool.sharedReadsServed
        // A statement the server cannot prepare: its error, the statement after it in the same
        // sync skipped, and the connection serves on.
        do {
            _ = try await Self.value(pool, "SELEC 1 AS v", on: executor)
            Issue.record("a statement with a syntax error answered")
        } catch {
            #expect((error as? StoreError)?.sqlState == "42601", "got \(error)")
        }
        #expect(try await Self.value(pool, "SELECT 7::int8 AS v", on: executor) == 7)
        #expect(pool.sharedReadsServed == served + 1, "the read after the failures was shared")
        await pool.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("the reads a loop's tasks send in one turn go out as one batch: one transaction, so one now()", .timeLimit(.minutes(1)))
    func batchedPerTurn() async throws {
        let (pool, _) = try await Self.sharedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let (group, loop) = try await Self.preparedLoop(pool)
        let executor = EventLoopTaskExecutor(eventLoop: loop)
        // Each read sleeps, so reads in transactions of their own would see different now()s.
        let sql: SQL = "SELECT (extract(epoch FROM now()) * 1000000)::int8 AS v, pg_sleep(0.005)::text AS slept"
        let (together, apart) = try await Task(executorPreference: executor) {
            let batch = (0..<4).map { _ in Task(executorPreference: executor) { try await pool.read(sql).first?.require("v", as: Int64.self) } }
            var together: Set<Int64?> = []
            for read in batch { together.insert(try await read.value) }
            var apart: Set<Int64?> = []
            for _ in 0..<2 { apart.insert(try await pool.read(sql).first?.require("v", as: Int64.self)) }
            return (together, apart)
        }.value
        #expect(together.count == 1, "four reads started in one turn shared one transaction: \(together)")
        #expect(apart.count == 2, "reads sent in turns of their own did not: \(apart)")
        #expect(pool.sharedReadsServed == 6)
        await pool.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a read naming a statement whose prepare the server skipped runs again elsewhere and gets its rows", .timeLimit(.minutes(2)))
    func skippedPrepare() async throws {
        let (pool, name) = try await Self.sharedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let (group, loop) = try await Self.preparedLoop(pool)
        let executor = EventLoopTaskExecutor(eventLoop: loop)
        let admin = try await LoopReadinessTests.admin(of: name)
        try await admin.query("SELECT pg_advisory_lock(1)")
        // One batch: a read that waits for the lock and then divides by zero, and the first read
        // of a new text, whose prepare the server then skips.
        let (failing, skipped) = await Task(executorPreference: executor) {
            (Task(executorPreference: executor) { try await pool.read("SELECT 1 / length(pg_advisory_lock(1)::text) AS v") },
             Task(executorPreference: executor) { try await pool.read("SELECT 5::int8 AS v").first?.require("v", as: Int64.self) })
        }.value
        try await loop.submit {}.get()
        // A later batch, sent while the first still waits, names the statement that was never made.
        let later = Task(executorPreference: executor) { try await pool.read("SELECT 5::int8 AS v").first?.require("v", as: Int64.self) }
        try await loop.submit {}.get()
        try await admin.query("SELECT pg_advisory_unlock(1)")
        guard case .failure(let error) = await failing.result else {
            Issue.record("dividing by zero answered")
            return
        }
        #expect((error as? StoreError)?.sqlState == "22012", "got \(error)")
        #expect(try await skipped.value == 5)
        #expect(try await later.value == 5)
        #expect(try await Self.value(pool, "SELECT 5::int8 AS v", on: executor) == 5, "prepared anew on the shared connection")
        #expect(pool.sharedReadsServed == 1, "only the last read was answered on the shared connection")
        await pool.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("a shared connection that has owed an answer for its stall limit takes no more: the next read runs on a connection of its own", .timeLimit(.minutes(2)))
    func stalledTurnsReadsAway() async throws {
        for (limit, queued) in [(Duration.zero, false), (.seconds(3_600), true)] {
            let (pool, name) = try await Self.sharedPool(size: 2, stall: limit)
            let (group, loop) = try await Self.preparedLoop(pool)
            let executor = EventLoopTaskExecutor(eventLoop: loop)
            let admin = try await LoopReadinessTests.admin(of: name)
            // A connection that owes nothing takes reads whatever its limit (and the handshake below needs it).
            #expect(try await Self.value(pool, "SELECT 1::int8 AS v", on: executor) == 1)
            let fresh = try await loop.submit { pool.sharedReads.pipelineForCaller() != nil }.get()
            try #require(fresh, "limit \(limit)")
            let blocked = try await Self.startBlockedRead(pool, admin: admin, on: executor)
            let served = pool.sharedReadsServed
            let taken = try await loop.submit { pool.sharedReads.pipelineForCaller() != nil }.get()
            #expect(taken == queued, "limit \(limit)")
            let next = Task(executorPreference: executor) { try await pool.read("SELECT 2::int8 AS v").first?.require("v", as: Int64.self) }
            // The read has gone one way or the other before the blocked one is answered.
            try await loop.submit {}.get()
            try await admin.query("SELECT pg_advisory_unlock(1)")
            try await blocked.value
            #expect(try await next.value == 2)
            #expect(pool.sharedReadsServed - served == (queued ? 2 : 1), "limit \(limit)")
            #expect(pool.openConnections == (queued ? 0 : 1), "limit \(limit)")
            // Everything answered: the connection owes nothing, so it takes the next read whatever its limit.
            #expect(try await Self.value(pool, "SELECT 3::int8 AS v", on: executor) == 3)
            #expect(pool.sharedReadsServed - served == (queued ? 3 : 2), "limit \(limit)")
            await pool.shutdown()
            try await group.shutdownGracefully()
        }
    }

    @Test("a pool shut down after its event loop has stopped still closes that loop's shared connection", .timeLimit(.minutes(1)))
    func shutdownAfterLoopStopped() async throws {
        let (pool, _) = try await Self.sharedPool(size: 1)
        let (group, loop) = try await Self.preparedLoop(pool)
        let pipeline = try #require(try await loop.submit { pool.sharedReads.pipelineForCaller() }.get())
        #expect(!pipeline.isClosed)
        try await group.shutdownGracefully()
        await pool.shutdown()
        #expect(pipeline.isClosed, "closed in place, not by a task its stopped loop would never run")
    }

    @Test("statements alike in length and at both ends are prepared apart, on the shared connection and on one of its own", .timeLimit(.minutes(1)))
    func alikeAtBothEnds() async throws {
        let (pool, _) = try await Self.sharedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let (group, loop) = try await Self.preparedLoop(pool)
        let executor = EventLoopTaskExecutor(eventLoop: loop)
        // The prepared-statement caches hash a text's length and its first and last 64 bytes.
        let padding = String(repeating: " ", count: 100)
        let texts = (1...3).map { SQL(unsafeSQL: "SELECT\(padding)\($0)::int8 AS v\(padding)") }
        for _ in 0..<2 {
            for (index, text) in texts.enumerated() {
                #expect(try await Self.value(pool, text, on: executor) == Int64(index + 1))
                #expect(try await pool.read(text).first?.require("v", as: Int64.self) == Int64(index + 1))
            }
        }
        #expect(pool.sharedReadsServed == 6)
        await pool.shutdown()
        try await group.shutdownGracefully()
    }

    @Test("reads not on an event loop, or with sharing turned off, use connections of their own", .timeLimit(.minutes(1)))
    func notShared() async throws {
        let (pool, _) = try await Self.sharedPool(size: 1)
        defer { Task { await pool.shutdown() } }
        let one = try await pool.read("SELECT 1::int8 AS one").first?.require("one", as: Int64.self)
        #expect(one == 1)
        #expect(pool.sharedReadsServed == 0)

        var configuration = pool.configuration
        configuration.sharedReads = false
        let unshared = PostgresPool(configuration: configuration)
        defer { Task { await unshared.shutdown() } }
        let (group, loop) = try await LoopReadinessTests.watchedLoop()
        let two = try await Task(executorPreference: EventLoopTaskExecutor(eventLoop: loop)) {
            try await unshared.read("SELECT 2::int8 AS two").first?.require("two", as: Int64.self)
        }.value
        #expect(two == 2)
        #expect(unshared.sharedReadsServed == 0)
        #expect(unshared.openConnections == 1)
        await pool.shutdown()
        try await group.shutdownGracefully()
    }

    /// A pool on a fresh database whose shared connections take reads however long they have
    /// waited for an answer, so that what a test queues is queued whatever the machine's speed, and
    /// connect again at once after a break unless `retry` says otherwise.
    static func sharedPool(
        size: Int, stall: Duration = .seconds(3_600), retry: Duration = .zero, metrics: TestMetrics? = nil
    ) async throws -> (PostgresPool, String) {
        try await TestDatabase.freshPool(size: size) { configuration in
            configuration.sharedReadStall = stall
            configuration.sharedReadRetry = retry
            if let metrics { configuration.metrics = metrics }
        }
    }

    /// The int8 column `v` of a read made from a task on `executor`'s loop.
    static func value(_ pool: PostgresPool, _ sql: SQL, on executor: EventLoopTaskExecutor) async throws -> Int64? {
        try await Task(executorPreference: executor) { try await pool.read(sql).first?.require("v", as: Int64.self) }.value
    }

    /// Waits until `loop` watches its answers and has its shared connection open.
    static func prepare(_ pool: PostgresPool, _ loop: any EventLoop) async throws {
        await LoopReadiness.prepare(loop)
        try #require(LoopReadiness.isWatching(loop), "this kernel grants no AIO poll")
        await pool.sharedReads.prepare(loop)
    }

    /// A one-thread event loop group whose loop has its shared connection open.
    static func preparedLoop(_ pool: PostgresPool) async throws -> (MultiThreadedEventLoopGroup, any EventLoop) {
        let (group, loop) = try await LoopReadinessTests.watchedLoop()
        try await prepare(pool, loop)
        return (group, loop)
    }

    /// Starts a read on the shared connection of `executor`'s loop that waits in the database
    /// for advisory lock 1, which `admin` holds, and returns once the database runs it (the
    /// handshake of `LoopReadinessTests.startBlockedStatement`, with the read's lock 2 taken by
    /// a read before it).
    static func startBlockedRead(
        _ pool: PostgresPool, admin: PostgresConnection, on executor: EventLoopTaskExecutor
    ) async throws -> Task<Void, any Error> {
        try await admin.query("SELECT pg_advisory_lock(1)")
        try await Task(executorPreference: executor) { _ = try await pool.read("SELECT pg_advisory_lock(2)::text AS locked") }.value
        let read = Task(executorPreference: executor) {
            _ = try await pool.read("SELECT pg_advisory_lock(1)::text AS locked FROM (SELECT pg_advisory_unlock(2) OFFSET 0) AS released")
        }
        try await admin.query("SELECT pg_advisory_lock(2)")
        return read
    }
}
