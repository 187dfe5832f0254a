import CLibPQ
import CoreMetrics
import Foundation
import NIOCore
import NIOPosix
import PassionRPC
import Synchronization

/// One connection per SwiftNIO event loop that the loop's handlers share for single-statement
/// reads, in libpq's pipeline mode: the reads the loop's tasks send in one turn go out as one
/// batch closed by one sync, and each read is answered as its result arrives.
///
/// A connection of its own per read costs a backend wake-up per statement on each side, 30–40 µs
/// of CPU apiece on this machine. A batch costs one send, one wake-up of the backend and one
/// answer back for all its reads. Only reads go here: a read takes no row locks, so no write's
/// transaction can hold it up for long; a read can still wait on a table lock (DDL such as a
/// partition drop) or an advisory lock, and the reads sent behind it wait too, which is why a
/// connection takes no more reads once it has owed answers for `sharedReadStall` without giving
/// one (`StallWatch`).
///
/// A read that cannot use its loop's pipeline (not on a watching loop, a sampled trace, the
/// pipeline full, connecting or broken) runs on a connection of its own from the pool. So does
/// a read the server skipped because one before it in its batch failed, and a read caught by a
/// broken pipeline: a read has no effect to repeat.
final class SharedReads: Sendable {
    private enum Slot {
        /// Connecting; the future completes when that ends, either way.
        case connecting(EventLoopFuture<Void>)
        case open(ReadPipeline)
        /// Connecting failed or the connection broke: reads use the pool's connections until `retryAt`.
        case failed(retryAt: ContinuousClock.Instant)
    }

    private struct State {
        var slots: [ObjectIdentifier: Slot] = [:]
        var closed = false
    }

    /// The most reads one pipeline takes at once, however fast its backend answers; besides,
    /// it takes none while it is stalled (`PoolConfiguration.sharedReadStall`).
    static let depth = 32

    private let state = Mutex(State())
    let configuration: PoolConfiguration
    private let connectors: NIOThreadPool
    private let metrics: PoolMetrics
    /// Reads answered through a pipeline.
    let served = Atomic<Int>(0)
    /// The most reads a pipeline has had in flight at once.
    let deepest = Atomic<Int>(0)

    /// The pool's: a stale plan met on a shared connection or a pool connection drops the
    /// prepared statements of both.
    let planEpoch: PlanEpoch

    init(configuration: PoolConfiguration, connectors: NIOThreadPool, metrics: PoolMetrics, planEpoch: PlanEpoch) {
        self.planEpoch = planEpoch
        self.configuration = configuration
        self.connectors = connectors
        self.metrics = metrics
    }

    /// Shared connections open now.
    var openCount: Int {
        state.withLock { state in
            state.slots.values.reduce(0) { count, slot in
                if case .open = slot { return count + 1 }
                return count
            }
        }
    }

    /// The pipeline of the caller's event loop when it can take a read now; nil sends the read
    /// to the pool. The first read on a loop starts connecting its pipeline.
    func pipelineForCaller() -> ReadPipeline? {
        guard configuration.sharedReads, let watcher = LoopReadiness.forCurrentLoop() else { return nil }
        guard case .open(let pipeline) = slot(of: watcher), pipeline.canTakeRead else { return nil }
        return pipeline
    }

    /// Connects `loop`'s pipeline unless it has one, and returns once it is open or connecting
    /// failed (tests, so that every read finds it open).
    func prepare(_ loop: any EventLoop) async {
        guard let watcher = LoopReadiness.watcher(of: loop) else { return }
        if case .connecting(let connected) = slot(of: watcher) { try? await connected.get() }
    }

    /// The slot of `watcher`'s loop, connecting its pipeline when it has none (or a retry is due).
    private func slot(of watcher: LoopReadiness) -> Slot? {
        let loop = watcher.loop
        let id = ObjectIdentifier(loop)
        let (slot, connecting) = state.withLock { state -> (Slot?, EventLoopPromise<Void>?) in
            guard !state.closed else { return (nil, nil) }
            switch state.slots[id] {
            case .failed(let retryAt) where ContinuousClock.now >= retryAt: break
            case nil: break
            case let slot: return (slot, nil)
            }
            let promise = loop.makePromise(of: Void.self)
            state.slots[id] = .connecting(promise.futureResult)
            return (.connecting(promise.futureResult), promise)
        }
        if let connecting { open(on: watcher, id: id, connected: connecting) }
        return slot
    }

    private func open(on watcher: LoopReadiness, id: ObjectIdentifier, connected: EventLoopPromise<Void>) {
        let configuration = self.configuration
        connectors.runIfActive(eventLoop: watcher.loop) {
            let connection = try PostgresConnection(
                conninfo: configuration.connectionString, statementCacheSize: configuration.statementCacheSize,
                loop: PostgresPoller.next(), tracer: nil)
            guard PQenterPipelineMode(connection.libpq) == 1 else {
                throw StoreError.connection(PostgresConnection.message(connection.libpq))
            }
            return connection
        }.whenComplete { result in
            // Counted with the pool's: an operator sees every connection an instance opens.
            if case .success = result { self.metrics.opened.increment() } else { self.metrics.connectFailures.increment() }
            let pipeline = try? ReadPipeline(connection: result.get(), watcher: watcher, owner: self, id: id)
            let kept = self.state.withLock { state -> Bool in
                guard !state.closed, case .connecting = state.slots[id] else { return false }
                state.slots[id] = pipeline.map { .open($0) } ?? .failed(retryAt: .now + configuration.sharedReadRetry)
                return pipeline != nil
            }
            if !kept { pipeline?.close() }
            connected.succeed()
        }
    }

    /// Asks the server to cancel what `connection` runs now; PQcancel connects to the server, so
    /// not on the event loop.
    func cancel(_ connection: PostgresConnection) {
        connectors.submit { state in
            if state == .active { connection.cancel() }
        }
    }

    /// `pipeline` broke: the loop's first read after `sharedReadRetry` connects a new one.
    func dropped(_ pipeline: ReadPipeline, id: ObjectIdentifier) {
        metrics.discarded.increment()
        let retryAt = ContinuousClock.now + configuration.sharedReadRetry
        state.withLock { state in
            if case .open(let current) = state.slots[id], current === pipeline { state.slots[id] = .failed(retryAt: retryAt) }
        }
    }

    /// No more reads are taken; reads in flight are answered, then each connection closes.
    func shutdown() {
        let pipelines = state.withLock { state -> [ReadPipeline] in
            state.closed = true
            defer { state.slots = [:] }
            return state.slots.values.compactMap { slot in
                if case .open(let pipeline) = slot { return pipeline }
                return nil
            }
        }
        // In place, not on each pipeline's loop: an embedder may have stopped its loops first.
        for pipeline in pipelines { pipeline.close() }
    }
}

extension PostgresPool {
    /// Runs one SELECT, a read that takes no locks, and returns its rows: on the caller's event
    /// loop's shared connection when it can take it (`SharedReads`), else on a connection of its
    /// own. `deadline` limits the wait for a connection of its own.
    public func read(_ sql: SQL, deadline: ContinuousClock.Instant? = nil) async throws -> Rows {
        if TraceContext.current?.isSampled != true, let pipeline = sharedReads.pipelineForCaller() {
            let rows: Rows?
            do {
                if let tracer = configuration.tracer {
                    rows = try await PostgresConnection.withStatementSpan(sql, tracer: tracer) { try await pipeline.run(sql) }
                } else {
                    rows = try await pipeline.run(sql)
                }
            } catch let error as StoreError {
                metrics.statementFailed(error)
                metrics.sharedReads.increment()
                throw error
            }
            if let rows {
                sharedReads.served.add(1, ordering: .relaxed)
                metrics.sharedReads.increment()
                return rows
            }
        }
        metrics.pooledReads.increment()
        return try await withConnection(deadline: deadline) { connection in try await connection.query(sql) }
    }

    /// Reads answered on a shared connection since the pool started.
    public var sharedReadsServed: Int { sharedReads.served.load(ordering: .relaxed) }

    /// The most reads one shared connection has had in flight at once.
    public var deepestSharedPipeline: Int { sharedReads.deepest.load(ordering: .relaxed) }
}
