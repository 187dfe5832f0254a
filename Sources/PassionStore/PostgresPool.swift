import CoreMetrics
import Foundation
import NIOPosix
import PassionMetrics
import PassionRPC
import Synchronization
import Tracing

/// How the pool reaches the database and how much it holds.
public struct PoolConfiguration: Sendable {
    /// libpq conninfo or URI, for example `postgresql://user@host/db` or `host=/tmp dbname=passion`.
    public var conninfo: String
    /// Connections at most. Default 10.
    public var size: Int = 10
    /// How long a call waits for a free connection before RESOURCE_EXHAUSTED. Default 2 s.
    public var acquireTimeout: Duration = .seconds(2)
    /// Seconds libpq may take to connect. Default 3.
    public var connectTimeoutSeconds: Int = 3
    /// Prepared statements kept per connection. Default 256.
    public var statementCacheSize: Int = 256
    /// Attempts of a transaction that fails with a serialization failure or deadlock. Default 10.
    public var transactionAttempts: Int = 10
    /// Whether single-statement reads (`PostgresPool.read`) from handlers on event loops share
    /// one pipelined connection per loop (`SharedReads`), besides the `size` of their own.
    /// Default true.
    public var sharedReads = true
    /// A loop's shared connection takes no more reads once it has owed answers this long without
    /// giving one: its backend is held up (a lock, a slow read), and reads sent behind would wait
    /// as long, so they use connections of their own until it answers (`StallWatch`). Default
    /// 1 ms (measured, README "Shared reads turned away only when stalled").
    public var sharedReadStall: Duration = .milliseconds(1)
    /// How long a loop's reads use connections of their own after its shared connection failed
    /// to connect or broke, before it connects again: a server or proxy that breaks every
    /// pipeline then costs a connect a second per loop, not one per read. Default 1 s.
    public var sharedReadRetry: Duration = .seconds(1)
    /// Where the pool's metrics go (docs/operations.md). Default: nowhere.
    public var metrics: any MetricsFactory = NOOPMetricsHandler.instance
    /// A span per statement, a child of the calling task's (`InstrumentationContext.current`).
    /// Default nil: nothing traced.
    public var tracer: (any Tracer)?

    public init(conninfo: String) {
        self.conninfo = conninfo
    }

    var connectionString: String {
        if conninfo.contains("://") {
            let separator = conninfo.contains("?") ? "&" : "?"
            return conninfo + "\(separator)connect_timeout=\(connectTimeoutSeconds)&application_name=passion-server"
        }
        return conninfo + " connect_timeout=\(connectTimeoutSeconds) application_name=passion-server"
    }
}

/// A pool of non-blocking libpq connections: a call's statements run from its own task, which
/// waits for answers without holding a thread (see `PostgresPoller`); only connecting, which
/// libpq does blocking, runs on the pool's threads. Calls wait a bounded time for a connection;
/// a cancelled call cancels its query; a call's deadline becomes `statement_timeout`. Callers
/// that run on `PostgresPool.executor`, or on a SwiftNIO event loop (`LoopReadiness`), save two
/// thread hops per transaction.
public final class PostgresPool: Sendable {
    public let configuration: PoolConfiguration
    /// Threads that open connections (DNS, TLS and authentication block in libpq).
    private let connectors: NIOThreadPool
    /// The thread that sends cancel requests (PQcancel connects to the server), apart from the
    /// connectors so that a cancel never waits behind a slow connect.
    private let cancellers: NIOThreadPool
    private let state = Mutex(State())
    let metrics: PoolMetrics
    /// One pipelined connection per event loop for reads (`read`).
    let sharedReads: SharedReads
    /// Shared by every connection the pool opens (`PlanEpoch`).
    let planEpoch: PlanEpoch

    private struct State {
        var idle: [PostgresConnection] = []
        var open = 0
        var waiters: [Waiter] = []
        /// A sweeper task runs (while anyone waits).
        var sweeping = false
        var closed = false
    }

    /// A caller waiting for a connection: resumed with one (nil: a broken connection's slot to
    /// connect in), or failed at its deadline by the sweeper.
    private struct Waiter {
        let deadline: ContinuousClock.Instant
        let continuation: CheckedContinuation<PostgresConnection?, any Error>
    }

    private enum WaitOutcome {
        case closed
        /// An idle connection, or nil: a slot to connect in.
        case ready(PostgresConnection?)
        case waiting(startSweeper: Bool)
    }

    /// The longest a waiter whose deadline comes before every other waiter's can wait past it:
    /// the sweeper sleeps until the earliest deadline it knows, but never longer than this.
    static let sweepInterval = Duration.milliseconds(20)

    public init(configuration: PoolConfiguration) {
        self.configuration = configuration
        self.metrics = PoolMetrics(size: configuration.size, factory: configuration.metrics)
        self.planEpoch = PlanEpoch(moved: metrics.stalePlans)
        self.connectors = NIOThreadPool(numberOfThreads: 2)
        self.cancellers = NIOThreadPool(numberOfThreads: 1)
        self.sharedReads = SharedReads(configuration: configuration, connectors: connectors, metrics: metrics, planEpoch: planEpoch)
        connectors.start()
        cancellers.start()
    }

    /// Closes every idle connection and stops the threads; calls in flight finish first.
    public func shutdown() async {
        let (idle, waiters) = state.withLock { state in
            state.closed = true
            defer {
                state.idle = []
                state.waiters = []
            }
            return (state.idle, state.waiters)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: RPCError(code: .unavailable, message: "database pool closed")) }
        sharedReads.shutdown()
        _ = idle
        try? await connectors.shutdownGracefully()
        try? await cancellers.shutdownGracefully()
    }

    /// Runs `body` with a connection of its own. `deadline`, when given, limits each statement
    /// via `statement_timeout` (inside a transaction) and the wait for a connection.
    @discardableResult
    public func withConnection<T: Sendable>(
        deadline: ContinuousClock.Instant? = nil, _ body: @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let connection = try await acquire(deadline: deadline)
        let lease = connection.beginLease()
        var healthy = true
        defer {
            connection.endLease()
            release(connection, healthy: healthy)
        }
        do {
            return try await withTaskCancellationHandler {
                try await body(connection)
            } onCancel: {
                // PQcancel connects to the server: not on the thread that cancelled (an event
                // loop, when a client cancels its call), and only while this call still has it.
                cancellers.submit { state in
                    if state == .active { connection.cancel(lease: lease) }
                }
            }
        } catch let error as StoreError {
            metrics.statementFailed(error)
            healthy = connection.isHealthy
            if Task.isCancelled, error.sqlState == "57014" {
                throw RPCError(code: .cancelled, message: "call cancelled")
            }
            throw error
        }
    }

    /// `withConnection` for a body that runs one autocommit statement: a deadlock, a
    /// serialization failure or a stale plan (`PlanEpoch`) undid it entirely, so it runs again,
    /// as a transaction would.
    @discardableResult
    public func statement<T: Sendable>(
        deadline: ContinuousClock.Instant? = nil, _ body: @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        try await retryingConflicts { try await withConnection(deadline: deadline, body) }
    }

    /// Runs `body` in a transaction, again when it fails with a serialization failure, a
    /// deadlock or a stale plan (`PlanEpoch`), up to `transactionAttempts` times: a body that
    /// catches the store's error must let these through. The remaining time before `deadline` becomes
    /// `SET LOCAL statement_timeout`.
    @discardableResult
    public func transaction<T: Sendable>(
        deadline: ContinuousClock.Instant? = nil, isolation: String = "READ COMMITTED",
        _ body: @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        precondition(["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"].contains(isolation))
        return try await retryingConflicts {
            try await withConnection(deadline: deadline) { connection in
                // The body runs where its answers arrive, so each resumes it on the thread that
                // saw it instead of waking another: on the caller's event loop when that loop
                // watches them (LoopReadiness), otherwise on its connection's loop.
                if LoopReadiness.watchesCaller {
                    return try await Self.run(body, in: connection, isolation: isolation, deadline: deadline)
                }
                return try await withTaskExecutorPreference(connection.poller) {
                    try await Self.run(body, in: connection, isolation: isolation, deadline: deadline)
                }
            }
        }
    }

    /// Runs `attempt` again after a serialization failure, deadlock or stale plan (which undid
    /// all it did), up to `transactionAttempts` times, with a growing random pause between tries.
    private func retryingConflicts<T>(_ attempt: () async throws -> T) async throws -> T {
        var tries = 0
        while true {
            tries += 1
            do {
                return try await attempt()
            } catch let error as StoreError where error.isRetryableTransactionFailure && tries < configuration.transactionAttempts {
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 << min(tries, 5)))))
            }
        }
    }

    /// One attempt of a transaction on `connection`.
    private static func run<T: Sendable>(
        _ body: @Sendable (PostgresConnection) async throws -> T, in connection: PostgresConnection, isolation: String,
        deadline: ContinuousClock.Instant?
    ) async throws -> T {
        var start = ["BEGIN ISOLATION LEVEL \(isolation)"]
        if let deadline {
            let remaining = deadline - .now
            guard remaining > .zero else {
                throw StoreError(sqlState: "57014", serverMessage: "deadline passed before the statement")
            }
            let milliseconds = max(1, remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000)
            start.append("SET LOCAL statement_timeout = \(milliseconds)")
        }
        connection.beginTransaction(start)
        do {
            let result = try await body(connection)
            try await connection.commitTransaction()
            return result
        } catch {
            await connection.rollbackTransaction()
            throw error
        }
    }

    /// An executor for tasks that mostly talk to the database: the pool's own loops, which
    /// resume them when answers arrive without a hop to another thread. Each use returns the
    /// next loop in turn.
    public static var executor: any TaskExecutor { PostgresPoller.next() }

    /// How long a connection must have been idle before acquiring it checks its socket.
    static let idleCheckAfter: Duration = .milliseconds(20)

    /// Connections open now (idle and in use).
    public var openConnections: Int { state.withLock { $0.open } }

    // MARK: - Acquire and release

    private enum Acquisition {
        case use(PostgresConnection)
        case connect
        case wait
        case closed
    }

    private func acquire(deadline: ContinuousClock.Instant?) async throws -> PostgresConnection {
        // A caller running on a loop gets a connection of that loop when one is idle, and a new
        // connection is watched by it: its answers then resume the caller without waking
        // another thread.
        let loop = PostgresPoller.current
        let limit = min(deadline ?? .now + configuration.acquireTimeout, .now + configuration.acquireTimeout)
        let decision = state.withLock { state -> Acquisition in
            if state.closed { return .closed }
            if let loop, let index = state.idle.lastIndex(where: { $0.poller === loop }) {
                return .use(state.idle.remove(at: index))
            }
            if let connection = state.idle.popLast() { return .use(connection) }
            if state.open < configuration.size {
                state.open += 1
                return .connect
            }
            return .wait
        }
        switch decision {
        case .use(let connection):
            metrics.wait.recordNanoseconds(0)
            // Checked only after a real idle spell: under load connections are idle for
            // microseconds, and a server restart is noticed by the next statement anyway.
            guard connection.idleSince.duration(to: .now) < Self.idleCheckAfter || connection.isStillOpen() else {
                // Closed by the server while idle: drop it and open another in its slot.
                metrics.discarded.increment()
                return try await openConnection(on: loop)
            }
            return connection
        case .closed:
            throw RPCError(code: .unavailable, message: "database pool closed")
        case .connect:
            metrics.wait.recordNanoseconds(0)
            return try await openConnection(on: loop)
        case .wait:
            let waitStarted = ContinuousClock.now
            defer { metrics.wait.record(waitStarted.duration(to: .now)) }
            let connection = try await withCheckedThrowingContinuation { continuation in
                let outcome = state.withLock { state -> WaitOutcome in
                    if state.closed { return .closed }
                    // A connection given back (or a slot freed) since the decision to wait: a
                    // release that found no waiter yet left it idle, and nobody would hand it over.
                    if let connection = state.idle.popLast() { return .ready(connection) }
                    if state.open < configuration.size {
                        state.open += 1
                        return .ready(nil)
                    }
                    state.waiters.append(Waiter(deadline: limit, continuation: continuation))
                    guard !state.sweeping else { return .waiting(startSweeper: false) }
                    state.sweeping = true
                    return .waiting(startSweeper: true)
                }
                switch outcome {
                case .closed: continuation.resume(throwing: RPCError(code: .unavailable, message: "database pool closed"))
                case .ready(let connection): continuation.resume(returning: connection)
                case .waiting(let startSweeper): if startSweeper { Task { await self.sweep() } }
                }
            }
            guard let connection else {
                // A slot to connect in: a broken connection's, handed over, or one freed meanwhile.
                return try await openConnection(on: loop)
            }
            return connection
        }
    }

    /// Opens a connection in a slot already counted in `open`; gives the slot back on failure.
    private func openConnection(on loop: PostgresPoller?) async throws -> PostgresConnection {
        let configuration = self.configuration
        let planEpoch = self.planEpoch
        do {
            let connection = try await connectors.runIfActive {
                try PostgresConnection(
                    conninfo: configuration.connectionString, statementCacheSize: configuration.statementCacheSize,
                    loop: loop ?? PostgresPoller.next(), tracer: configuration.tracer, planEpoch: planEpoch)
            }
            metrics.opened.increment()
            return connection
        } catch {
            metrics.connectFailures.increment()
            state.withLock { $0.open -= 1 }
            throw RPCError(code: .unavailable, message: "database unavailable")
        }
    }

    /// Fails the waiters whose deadline passed. One task for the whole pool, running while anyone
    /// waits: a task and a timer per waiting call cost, under load, a task, a timer and thread
    /// switches on the global executor for every call that found the pool busy.
    private func sweep() async {
        while true {
            let now = ContinuousClock.now
            let (expired, earliest) = state.withLock { state -> ([Waiter], ContinuousClock.Instant?) in
                var expired: [Waiter] = []
                state.waiters.removeAll { waiter in
                    guard waiter.deadline <= now else { return false }
                    expired.append(waiter)
                    return true
                }
                guard let earliest = state.waiters.lazy.map(\.deadline).min() else {
                    state.sweeping = false
                    return (expired, nil)
                }
                return (expired, earliest)
            }
            for waiter in expired {
                waiter.continuation.resume(throwing: RPCError(
                    code: .resourceExhausted, message: "all \(configuration.size) database connections are busy",
                    details: ErrorDetails(reason: "POOL_EXHAUSTED", fields: ["retry-after-ms": "100"])))
            }
            guard let earliest else { return }
            // A waiter with an earlier deadline may come meanwhile.
            try? await Task.sleep(until: min(earliest, .now + Self.sweepInterval))
        }
    }

    /// Callers waiting for a connection now.
    public var waitingCallers: Int { state.withLock { $0.waiters.count } }

    /// Sets the pool's gauges from its state; called when metrics are scraped.
    public func publishGauges() {
        let (open, idle, waiting) = state.withLock { ($0.open, $0.idle.count, $0.waiters.count) }
        metrics.openConnections.record(open)
        metrics.idleConnections.record(idle)
        metrics.waiters.record(waiting)
        metrics.sharedConnections.record(sharedReads.openCount)
    }

    private func release(_ connection: PostgresConnection, healthy: Bool) {
        let usable = healthy && connection.isHealthy
        if !usable { metrics.discarded.increment() }
        let waiter = state.withLock { state -> (CheckedContinuation<PostgresConnection?, any Error>, PostgresConnection?)? in
            if !usable { state.open -= 1 }
            if state.closed {
                if usable { state.open -= 1 }
                return nil
            }
            if !state.waiters.isEmpty {
                let waiter = state.waiters.removeFirst().continuation
                if usable { return (waiter, connection) }
                // The broken connection's slot goes to the waiter, which connects anew.
                state.open += 1
                return (waiter, nil)
            }
            if usable {
                connection.idleSince = .now
                state.idle.append(connection)
            }
            return nil
        }
        if let (continuation, connection) = waiter { continuation.resume(returning: connection) }
    }
}
