import CLibPQ
import Foundation
import NIOCore
import PassionRPC
import Synchronization

/// One event loop's shared read connection in libpq's pipeline mode (see `SharedReads`).
///
/// `@unchecked Sendable`: after `init` everything but `closing` is touched only on `loop`: reads
/// are submitted by tasks running there, and its `LoopReadiness` watcher calls back there.
/// `closing` is atomic because the pool may close a pipeline after its loop has stopped.
final class ReadPipeline: @unchecked Sendable {
    /// What became of one read.
    private enum Answer: Sendable {
        case rows(Rows)
        case failed(StoreError)
        /// The pipeline broke or closed before answering: run the read elsewhere.
        case elsewhere
        case cancelled
    }

    /// A read sent and not yet answered.
    private struct Pending {
        let ticket: Int
        /// Its statement, to forget the name when the server no longer has the statement.
        let key: StatementKey
        /// The prepared statement it names, if any.
        let name: StatementName?
        /// Results still to come for it: 2 while the prepare sent on its way is unanswered.
        var resultsLeft: Int
        var rows: Rows?
        var failure: StoreError?
        /// It was skipped or named a statement the server does not have: it runs again on a
        /// connection of its own (a read has no effect to repeat).
        var rerun = false
        /// nil once its caller was cancelled: its answer is read and dropped.
        var continuation: CheckedContinuation<Answer, Never>?
        /// The server was asked to cancel it.
        var cancelSent = false
        /// Not a caller's read: the DEALLOCATE ALL after a stale plan, answered to nobody.
        var housekeeping = false
        /// The `PlanEpoch` its statement was named in.
        var epoch = 0
    }

    let loop: any EventLoop
    /// The loop's watcher, which calls back when answers arrive.
    private let watcher: LoopReadiness
    private let connection: PostgresConnection
    private let owner: SharedReads
    /// Turns reads away while the backend is held up.
    private var stall: StallWatch
    private let id: ObjectIdentifier
    /// Oldest first, as the server answers them.
    private var queue: [Pending] = []
    private var prepared: [StatementKey: StatementName] = [:]
    private var preparedEver = 0
    /// The pool's `PlanEpoch` when `prepared` was last emptied; -1 once a DEALLOCATE ALL failed.
    private var preparedInEpoch: Int
    /// Numbers reads, for a cancel to find its own (the cancel handler runs on any thread).
    private let tickets = Atomic<Int>(0)
    /// A readiness request is pending with the loop's watcher.
    private var watching = false
    /// Reads were sent since the last sync, and a task to sync them is queued on the loop.
    private var batchOpen = false
    /// Syncs sent whose answer has not been taken.
    private var syncsOwed = 0
    /// No more reads are taken: the pool closed (set from any thread), or the connection broke.
    private let closing = Atomic<Bool>(false)
    var isClosed: Bool { closing.load(ordering: .relaxed) }
    private var broken = false

    init(connection: PostgresConnection, watcher: LoopReadiness, owner: SharedReads, id: ObjectIdentifier) {
        self.connection = connection
        self.loop = watcher.loop
        self.watcher = watcher
        self.owner = owner
        self.stall = StallWatch(limit: owner.configuration.sharedReadStall)
        self.id = id
        self.preparedInEpoch = owner.planEpoch.current
    }

    /// Whether a read from a task on this loop can be sent now.
    var canTakeRead: Bool {
        guard loop.inEventLoop, !isClosed, queue.count < SharedReads.depth else { return false }
        return stall.takesReads(at: .now)
    }

    /// The read's rows, or nil when it must run on a connection of its own. Call it from a task
    /// running on `loop`.
    func run(_ sql: SQL) async throws -> Rows? {
        try PostgresConnection.refuseUnsendable(sql)
        let ticket = tickets.add(1, ordering: .relaxed).newValue
        let answer = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Answer, Never>) in
                guard canTakeRead, !Task.isCancelled else {
                    return continuation.resume(returning: Task.isCancelled ? Answer.cancelled : Answer.elsewhere)
                }
                submit(sql, ticket: ticket, continuation: continuation)
            }
        } onCancel: {
            loop.execute { self.abandon(ticket) }
        }
        switch answer {
        case .rows(let rows): return rows
        case .failed(let error): throw error
        case .elsewhere: return nil
        case .cancelled: throw RPCError(code: .cancelled, message: "call cancelled")
        }
    }

    /// Takes no more reads; those in flight are still answered. Safe from any thread, and after
    /// the loop has stopped.
    func close() {
        closing.store(true, ordering: .relaxed)
    }

    private func submit(_ sql: SQL, ticket: Int, continuation: CheckedContinuation<Answer, Never>) {
        guard dropPreparedIfStale() else { return continuation.resume(returning: .elsewhere) }
        let handle = connection.libpq
        let key = StatementKey(sql.text)
        var name = prepared[key]
        var results = 1
        let sent = PostgresConnection.withParameters(sql.parameters) { values -> Bool in
            let count = Int32(values.count)
            if let name { return PQsendQueryPrepared(handle, name.cString, count, values.baseAddress, nil, nil, 0) == 1 }
            guard prepared.count < connection.statementCacheSize else {
                // A full cache: unprepared, since dropping a statement a queued read may still
                // name would fail that read.
                return PQsendQueryParams(handle, sql.text, count, nil, values.baseAddress, nil, nil, 0) == 1
            }
            let newName = StatementName("passion_read_\(preparedEver)")
            preparedEver += 1
            name = newName
            results = 2
            return PQsendPrepare(handle, newName.cString, sql.text, count, nil) == 1
                && PQsendQueryPrepared(handle, newName.cString, count, values.baseAddress, nil, nil, 0) == 1
        }
        // Named at once: a read of the same text sent before this one's answer follows the
        // prepare in the pipeline, so the server knows the name by then.
        if results == 2 { prepared[key] = name }
        stall.owing(from: .now)
        queue.append(
            Pending(ticket: ticket, key: key, name: name, resultsLeft: results, continuation: continuation, epoch: preparedInEpoch))
        guard sent else { return fail() }
        _ = owner.deepest.max(queue.count, ordering: .relaxed)
        openBatch()
    }

    /// The sync goes after every read the loop's current tasks send: one send and one wake-up
    /// of the backend for all of them, and one answer back.
    private func openBatch() {
        guard !batchOpen else { return }
        batchOpen = true
        loop.execute { self.endBatch() }
    }

    /// After a stale plan anywhere in the pool (`PlanEpoch`), forgets this connection's prepared
    /// statements and drops them on the server, in the pipeline ahead of the reads that follow;
    /// reads already sent run first, under the names they were sent with. False when the
    /// connection broke.
    private func dropPreparedIfStale() -> Bool {
        let epoch = owner.planEpoch.current
        guard epoch != preparedInEpoch else { return true }
        prepared = [:]
        preparedInEpoch = epoch
        guard PQsendQueryParams(connection.libpq, "DEALLOCATE ALL", 0, nil, nil, nil, nil, 0) == 1 else {
            fail()
            return false
        }
        stall.owing(from: .now)
        queue.append(
            Pending(ticket: 0, key: StatementKey(""), name: nil, resultsLeft: 1, continuation: nil, housekeeping: true))
        openBatch()
        return true
    }

    /// Closes the batch with a sync, which sends it.
    private func endBatch() {
        batchOpen = false
        guard !broken else { return }
        guard PQpipelineSync(connection.libpq) == 1 else { return fail() }
        syncsOwed += 1
        pump()
    }

    /// Sends what libpq holds, takes every whole answer it has, and asks the loop's watcher to
    /// call back while answers are owed or output is left.
    private func pump() {
        guard !broken else { return }
        let handle = connection.libpq
        let flushed = PQflush(handle)
        guard flushed >= 0 else { return fail() }
        var endsInARow = 0
        var answered = false
        defer { if answered { stall.answered(at: .now, stillOwing: !queue.isEmpty) } }
        while syncsOwed > 0 {
            if PQisBusy(handle) == 1 {
                // Over TLS, OpenSSL may hold decrypted bytes the socket no longer signals.
                guard connection.tlsHasPendingBytes else { break }
                guard PQconsumeInput(handle) == 1 else { return fail() }
                continue
            }
            guard let result = PQgetResult(handle) else {
                // NULL ends one statement's results; a second in a row means libpq expects
                // nothing more while a sync is still owed.
                endsInARow += 1
                guard endsInARow < 2 else { return fail() }
                continue
            }
            endsInARow = 0
            answered = true
            guard take(result) else { return fail() }
        }
        if syncsOwed > 0 || flushed == 1 { watch(forWriting: flushed == 1) }
    }

    /// Files one result under the oldest read, answering it with its last; false when the
    /// connection is done for (a result nobody is owed, or the session ending).
    private func take(_ result: OpaquePointer) -> Bool {
        let storage = ResultStorage(result)
        let status = PQresultStatus(result)
        if status == PGRES_PIPELINE_SYNC {
            syncsOwed -= 1
            return true
        }
        guard !queue.isEmpty else { return false }
        if queue[0].housekeeping, status != PGRES_COMMAND_OK {
            // Skipped after a failed read, or refused: tried again before the next read.
            preparedInEpoch = -1
        }
        queue[0].resultsLeft -= 1
        let isPrepare = queue[0].resultsLeft > 0
        switch status {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK:
            if !isPrepare { queue[0].rows = Rows(storage) }
        case PGRES_PIPELINE_ABORTED:
            // An earlier read in its batch failed, so the server skipped this one.
            if isPrepare { forgetName(of: queue[0]) }
            queue[0].rerun = true
        default:
            let error = PostgresConnection.error(from: result, connection: connection.libpq)
            // The server is ending the session (terminated, shutting down) or the link broke:
            // not this read's doing, so every read owed runs elsewhere.
            if error.sqlState.hasPrefix("57P") || error.sqlState.hasPrefix("08") { return false }
            // A failed prepare, or a name the server lost (its prepare was skipped in an earlier
            // batch) or a plan the schema invalidated: prepared again by the next read.
            let stalePlan = !isPrepare && queue[0].name != nil && PostgresConnection.isStalePlan(result)
            let stale = error.sqlState == "26000" || stalePlan
            if isPrepare || stale { forgetName(of: queue[0]) }
            // A plan the schema staled: every connection of the pool prepares anew.
            if stalePlan { owner.planEpoch.advance(from: queue[0].epoch) }
            // A cancel meant for the read before it can land on a read whose caller still waits,
            // on its prepare as well as on the read itself (and so can a statement_timeout).
            let cancelledForAnother = error.sqlState == "57014" && queue[0].continuation != nil
            if cancelledForAnother || (!isPrepare && stale) {
                queue[0].rerun = true
            } else if queue[0].failure == nil {
                queue[0].failure = error
            }
        }
        if queue[0].resultsLeft == 0 {
            answer(queue.removeFirst())
            cancelHeadIfAbandoned()
        }
        return true
    }

    private func forgetName(of read: Pending) {
        if let name = read.name, prepared[read.key] == name { prepared[read.key] = nil }
    }

    private func answer(_ read: Pending) {
        guard let continuation = read.continuation else { return }
        if let failure = read.failure {
            continuation.resume(returning: .failed(failure))
        } else if read.rerun {
            continuation.resume(returning: .elsewhere)
        } else if let rows = read.rows {
            continuation.resume(returning: .rows(rows))
        } else {
            continuation.resume(returning: .failed(StoreError.connection("pipeline ended without a result")))
        }
    }

    /// The caller of `ticket` was cancelled: it is told now, and its answer dropped when it comes.
    /// The server stops the read once it is the one running, as a pool connection's would, so a
    /// slow read nobody waits for does not hold up the reads behind it.
    private func abandon(_ ticket: Int) {
        guard let index = queue.firstIndex(where: { $0.ticket == ticket }), let continuation = queue[index].continuation else { return }
        queue[index].continuation = nil
        continuation.resume(returning: .cancelled)
        cancelHeadIfAbandoned()
    }

    /// Asks the server to cancel the oldest read when its caller is gone. The server may have
    /// moved on to the next read by then: that one fails with 57014 and runs again elsewhere.
    private func cancelHeadIfAbandoned() {
        guard !broken, !queue.isEmpty, queue[0].continuation == nil, !queue[0].cancelSent, !queue[0].housekeeping else { return }
        queue[0].cancelSent = true
        owner.cancel(connection)
    }

    private func watch(forWriting: Bool) {
        guard !watching else { return }
        let events = PostgresPoller.readable | (forWriting ? PostgresPoller.writable : 0)
        guard watcher.watch(connection.descriptor, for: events, then: { ready in self.ready(ready) }) else { return fail() }
        watching = true
    }

    private func ready(_ events: UInt32) {
        watching = false
        guard !broken else { return }
        guard events != PostgresPoller.unwatchable, PQconsumeInput(connection.libpq) == 1 else { return fail() }
        pump()
    }

    /// The connection broke (or its loop closed): every read still owed runs elsewhere.
    private func fail() {
        guard !broken else { return }
        broken = true
        closing.store(true, ordering: .relaxed)
        owner.dropped(self, id: id)
        let owed = queue
        queue = []
        for read in owed { read.continuation?.resume(returning: .elsewhere) }
    }
}
