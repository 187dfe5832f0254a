import CLibPQ
import COpenSSL
import Foundation
import PassionRPC
import Tracing
import Synchronization

/// One libpq connection in non-blocking mode: statements are sent from the calling task, which
/// suspends while its event loop (`LoopReadiness`) or `PostgresPoller` waits for the answer.
/// One caller at a time.
///
/// `@unchecked Sendable`: the pool hands a connection to one task at a time, and the poller
/// touches only the socket's number; the only member used concurrently is `cancel()`, which
/// uses libpq's thread-safe `PGcancel`.
public final class PostgresConnection: @unchecked Sendable {
    private let connection: OpaquePointer
    /// The libpq connection itself, for `SharedReads`, which owns this connection outright.
    var libpq: OpaquePointer { connection }
    private let canceller: OpaquePointer?
    let descriptor: Int32
    /// The loop that waits for this connection's socket, and runs its transactions, unless
    /// the caller's event loop does (`LoopReadiness`).
    let poller: PostgresPoller
    private var prepared: [StatementKey: StatementName] = [:]
    private var preparedOrder: [StatementKey] = []
    /// Shared with the pool's other connections: a stale plan met anywhere drops this
    /// connection's prepared statements too.
    let planEpoch: PlanEpoch
    /// The epoch this connection's prepared statements were named in.
    private var preparedInEpoch: Int
    /// The server may still hold statements of an earlier epoch: a DEALLOCATE ALL failed.
    private var deallocationOwed = false
    let statementCacheSize: Int
    /// Spans per statement, children of the call's; nil traces nothing.
    private let tracer: (any Tracer)?
    private var nextStatement = 0
    /// Statements opening a transaction that are not sent yet: they travel with the
    /// transaction's first statement, saving a round trip each.
    private var pendingTransactionStart: [String] = []
    /// When the pool last put the connection back (written and read under the pool's lock).
    var idleSince = ContinuousClock.now
    /// Set when a failure may have left libpq mid-protocol (a pipeline it could not leave): the
    /// pool then closes the connection instead of handing it on.
    private var poisoned = false
    /// Which use of the connection a cancel is for: the pool starts a new lease per call, and a
    /// cancel that arrives after its call ended must not reach the next one.
    private let lease = Mutex<Int>(0)

    /// Connects with a libpq conninfo string or URI; throws UNAVAILABLE-class errors. Blocks
    /// while connecting (DNS, TLS, authentication): call it off the event loops.
    public convenience init(conninfo: String, statementCacheSize: Int = 256) throws {
        try self.init(conninfo: conninfo, statementCacheSize: statementCacheSize, loop: PostgresPoller.next(), tracer: nil)
    }

    /// Connects, its socket watched by `loop`.
    init(
        conninfo: String, statementCacheSize: Int, loop: PostgresPoller, tracer: (any Tracer)?, planEpoch: PlanEpoch = PlanEpoch()
    ) throws {
        guard let connection = PQconnectdb(conninfo) else { throw StoreError.connection("out of memory") }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines)
            PQfinish(connection)
            throw StoreError.connection(message)
        }
        PostgresNotices.install(on: connection)
        self.poller = loop
        self.connection = connection
        self.canceller = PQgetCancel(connection)
        self.descriptor = PQsocket(connection)
        self.statementCacheSize = statementCacheSize
        self.tracer = tracer
        self.planEpoch = planEpoch
        self.preparedInEpoch = planEpoch.current
        // Text results must parse the same way whatever the server's defaults are.
        _ = try executeBlocking("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'")
        guard PQsetnonblocking(connection, 1) == 0 else { throw StoreError.connection(Self.message(connection)) }
    }

    deinit {
        if let canceller { PQfreeCancel(canceller) }
        poller.forget(descriptor)
        PQfinish(connection)
    }

    /// Whether the calling code runs on this connection's loop (see `PostgresPool.executor`):
    /// then each answer resumes it on the thread that saw the answer arrive. (A caller on a
    /// watching event loop gets the same from `LoopReadiness`, and this is false there.)
    public var isOnCallersLoop: Bool { poller === PostgresPoller.current }

    /// Whether the connection is still usable.
    public var isHealthy: Bool { !poisoned && PQstatus(connection) == CONNECTION_OK }

    /// For an idle pooled connection: whether the server has closed it meanwhile (restart,
    /// admin termination). A pooled connection never LISTENs, so its idle socket has nothing to
    /// read unless the server said goodbye (a FATAL message, then EOF); a zero-timeout poll
    /// tells without a round trip.
    func isStillOpen() -> Bool {
        var pending = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard descriptor >= 0, isHealthy else { return false }
        return poll(&pending, 1, 0) == 0
    }

    /// Asks the server to cancel the statement running now; safe from any thread.
    public func cancel() {
        guard let canceller else { return }
        var buffer = [CChar](repeating: 0, count: 256)
        _ = PQcancel(canceller, &buffer, Int32(buffer.count))
    }

    /// Starts a new use of the connection; returns its number for `cancel(lease:)`.
    func beginLease() -> Int {
        lease.withLock { lease in
            lease += 1
            return lease
        }
    }

    /// Ends the current use: a cancel for it that has not started yet will do nothing.
    func endLease() {
        lease.withLock { $0 += 1 }
    }

    /// Cancels the statement running now if the connection is still in use `lease` (blocks
    /// `endLease` meanwhile, so the cancel cannot land in the next use).
    func cancel(lease expected: Int) {
        lease.withLock { current in
            if current == expected { cancel() }
        }
    }

    /// Waits up to `timeoutMilliseconds` for NOTIFY messages on channels this connection LISTENs
    /// to; returns those that arrived (possibly none). Blocks: for the listener's own thread.
    /// Throws when the connection is lost.
    public func waitForNotifications(timeoutMilliseconds: Int32) throws -> [(channel: String, payload: String)] {
        var notifications = drainNotifications()
        guard notifications.isEmpty else { return notifications }
        var pending = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard descriptor >= 0 else { throw StoreError.connection("listener connection closed") }
        let ready = poll(&pending, 1, timeoutMilliseconds)
        guard ready >= 0 || errno == EINTR else { throw StoreError.connection("poll failed") }
        if ready > 0 {
            guard PQconsumeInput(connection) == 1 else { throw StoreError.connection(Self.message(connection)) }
            notifications = drainNotifications()
        }
        guard isHealthy else { throw StoreError.connection("listener connection lost") }
        return notifications
    }

    private func drainNotifications() -> [(channel: String, payload: String)] {
        var notifications: [(channel: String, payload: String)] = []
        while let notify = PQnotifies(connection) {
            notifications.append((String(cString: notify.pointee.relname), String(cString: notify.pointee.extra)))
            PQfreemem(notify)
        }
        return notifications
    }

    // MARK: - Statements

    /// Runs a statement through the prepared-statement cache; a statement of a sampled trace
    /// goes unprepared, its text tagged with the trace (see `tracedText`).
    @discardableResult
    public func query(_ sql: SQL) async throws -> Rows {
        try await query(sql, readingResult: Rows.init)
    }

    /// `query`, its successful result handed to `read`: for callers that take what they need
    /// from the result in place. The result is freed once nothing holds its storage (`Rows` does).
    func query<Value>(_ sql: SQL, readingResult read: (ResultStorage) throws -> Value) async throws -> Value {
        try Self.refuseUnsendable(sql)
        guard let tracer else { return try await run(sql, read) }
        return try await Self.withStatementSpan(sql, tracer: tracer) { try await run(sql, read) }
    }

    /// Refuses what libpq cannot send, before anything is sent. libpq takes C strings: a NUL
    /// would silently cut the value short ("victim\0x" stored as "victim"), so it is refused as
    /// PostgreSQL refuses one in text. The protocol counts parameters in 16 bits: past that libpq
    /// fails the send, which on a shared connection would look like a broken connection.
    static func refuseUnsendable(_ sql: SQL) throws {
        guard sql.parameters.count <= maximumParameters else {
            throw StoreError(
                sqlState: "54023",
                serverMessage: "a statement takes at most \(maximumParameters) parameters, this one has \(sql.parameters.count)")
        }
        if sql.parameters.contains(where: { $0.map(containsNUL) == true }) {
            throw StoreError(sqlState: "22021", serverMessage: "a text value contains a NUL character")
        }
    }

    static let maximumParameters = 65_535

    /// A `memchr` over the text's bytes: walking `utf8` as a generic sequence cost 1% of a
    /// dashboard call's server CPU.
    static func containsNUL(_ text: String) -> Bool {
        let found = text.utf8.withContiguousStorageIfAvailable { bytes in
            guard let start = bytes.baseAddress, !bytes.isEmpty else { return false }
            return memchr(start, 0, bytes.count) != nil
        }
        return found ?? text.utf8.contains(0)
    }

    private func run<Value>(_ sql: SQL, _ read: (ResultStorage) throws -> Value) async throws -> Value {
        try await retryingStalePlan { try await runOnce(sql, read) }
    }

    private func runOnce<Value>(_ sql: SQL, _ read: (ResultStorage) throws -> Value) async throws -> Value {
        let trace = TraceContext.current.flatMap { $0.isSampled ? $0 : nil }
        let name = trace == nil ? try await preparedName(for: sql) : nil
        let text = trace.map { Self.tracedText(sql, $0) } ?? sql.text
        let prologue = pendingTransactionStart
        pendingTransactionStart = []
        let sent = Self.withParameters(sql.parameters) { values in
            // A traced statement's text is new on every call: preparing it would only fill the cache.
            func send() -> Bool {
                if let name { return PQsendQueryPrepared(connection, name.cString, Int32(values.count), values.baseAddress, nil, nil, 0) == 1 }
                return PQsendQueryParams(connection, text, Int32(values.count), nil, values.baseAddress, nil, nil, 0) == 1
            }
            if prologue.isEmpty { return send() }
            // The transaction's opening statements and this one in one libpq pipeline.
            guard PQenterPipelineMode(connection) == 1 else { return false }
            var sent = true
            for statement in prologue {
                sent = sent && PQsendQueryParams(connection, statement, 0, nil, nil, nil, nil, 0) == 1
            }
            sent = sent && send()
            return sent && PQpipelineSync(connection) == 1
        }
        guard sent else {
            // Part of a pipeline may be queued without its sync: nothing can follow it.
            if !prologue.isEmpty { poisoned = true }
            throw StoreError.connection(Self.message(connection))
        }
        if prologue.isEmpty {
            return try await collect(sql: sql.text, read)
        }
        defer {
            if PQexitPipelineMode(connection) != 1 { poisoned = true }
        }
        return try await collectPipeline(statements: prologue.count + 1, sql: sql.text, read)
    }

    /// Runs SQL without parameters and without preparing it (migrations, SET, BEGIN). Several
    /// statements are allowed; the last one's rows are returned.
    @discardableResult
    public func execute(_ text: String) async throws -> Rows {
        let prologue = pendingTransactionStart
        pendingTransactionStart = []
        // The simple protocol takes several statements in one message; an explicit BEGIN among
        // them keeps the transaction open after the message.
        return try await simple(prologue.isEmpty ? text : (prologue + [text]).joined(separator: "; "))
    }

    /// One simple-protocol message, outside any pending transaction start.
    private func simple(_ text: String) async throws -> Rows {
        guard PQsendQuery(connection, text) == 1 else { throw StoreError.connection(Self.message(connection)) }
        return try await collect(sql: nil)
    }

    /// `execute` for a thread that may block: the listener's and setup outside any task.
    @discardableResult
    public func executeBlocking(_ text: String) throws -> Rows {
        try rows(from: PQexec(connection, text), sql: nil)
    }

    /// Opens a transaction lazily: `statements` (BEGIN, SET LOCAL ...) go out together with the
    /// next statement, in one round trip.
    func beginTransaction(_ statements: [String]) {
        pendingTransactionStart = statements
    }

    /// Commits the transaction; a transaction that never ran a statement costs nothing.
    func commitTransaction() async throws {
        guard pendingTransactionStart.isEmpty else {
            pendingTransactionStart = []
            return
        }
        try await execute("COMMIT")
    }

    /// Rolls back after a failure, never throwing: a broken connection is noticed by the pool.
    func rollbackTransaction() async {
        guard pendingTransactionStart.isEmpty else {
            pendingTransactionStart = []
            return
        }
        _ = try? await execute("ROLLBACK")
    }

    // MARK: - Round trips

    /// Sends what libpq has buffered, waiting for the socket when it is full.
    private func flush() async throws {
        while true {
            switch PQflush(connection) {
            case 0: return
            case 1:
                let ready = try await waitForSocket(PostgresPoller.readable | PostgresPoller.writable)
                // Input must be read while output waits, or the server may stall writing to us.
                if ready & PostgresPoller.readable != 0, PQconsumeInput(connection) != 1 {
                    throw StoreError.connection(Self.message(connection))
                }
            default: throw StoreError.connection(Self.message(connection))
            }
        }
    }

    /// The next result once libpq has it whole; nil ends one statement's results.
    private func nextResult() async throws -> OpaquePointer? {
        while PQisBusy(connection) == 1 {
            // Over TLS, OpenSSL may hold decrypted bytes the socket no longer signals.
            if !tlsHasPendingBytes { _ = try await waitForSocket(PostgresPoller.readable) }
            guard PQconsumeInput(connection) == 1 else { throw StoreError.connection(Self.message(connection)) }
        }
        return PQgetResult(connection)
    }

    /// Waits until the socket is ready for `events`, on the caller's event loop when it watches
    /// (`LoopReadiness`), else on this connection's poller; returns what it is ready for.
    private func waitForSocket(_ events: UInt32) async throws -> UInt32 {
        var ready = await LoopReadiness.wait(descriptor, for: events)
        if ready == nil { ready = await poller.wait(descriptor, for: events) }
        guard let ready, ready != PostgresPoller.unwatchable else {
            // libpq still has the statement in progress: the connection cannot serve another.
            poisoned = true
            throw StoreError.connection("the connection's socket cannot be watched")
        }
        return ready
    }

    var tlsHasPendingBytes: Bool {
        guard PQsslInUse(connection) == 1, let ssl = PQsslStruct(connection, "OpenSSL") else { return false }
        return SSL_pending(OpaquePointer(ssl)) > 0
    }

    /// Every result of the statement just sent: the last one's rows, or the first failure.
    private func collect(sql: String?) async throws -> Rows {
        try await collect(sql: sql, Rows.init)
    }

    private func collect<Value>(sql: String?, _ read: (ResultStorage) throws -> Value) async throws -> Value {
        try await flush()
        var outcome: Result<Value, any Error>?
        while let result = try await nextResult() {
            let value = Result { try self.read(result, sql: sql, read) }
            if case .failure = outcome {} else { outcome = value }
        }
        guard let outcome else { throw StoreError.connection(isHealthy ? "no result" : Self.message(connection)) }
        return try outcome.get()
    }

    /// The results of a pipeline of `statements` ending in a sync: the last statement's rows,
    /// or the first failure among them.
    private func collectPipeline<Value>(statements: Int, sql: String, _ read: (ResultStorage) throws -> Value) async throws -> Value {
        try await flush()
        var failure: (any Error)?
        var statementRows: Value?
        var index = 0
        while true {
            guard let result = try await nextResult() else {
                // NULL ends one statement's results.
                index += 1
                guard isHealthy else { break }
                continue
            }
            let status = PQresultStatus(result)
            if status == PGRES_PIPELINE_SYNC {
                PQclear(result)
                break
            }
            if status == PGRES_PIPELINE_ABORTED {
                PQclear(result)
                continue
            }
            let last = index == statements - 1
            do {
                if last {
                    statementRows = try self.read(result, sql: sql, read)
                } else {
                    try self.read(result, sql: nil) { _ in }
                }
            } catch {
                if failure == nil { failure = error }
            }
        }
        if let failure { throw failure }
        guard let statementRows else {
            throw StoreError.connection(isHealthy ? "pipeline ended without a result" : Self.message(connection))
        }
        return statementRows
    }

    private func preparedName(for sql: SQL) async throws -> StatementName {
        if planEpoch.current != preparedInEpoch || deallocationOwed { await dropPrepared() }
        let key = StatementKey(sql.text)
        if let name = prepared[key] { return name }
        if prepared.count >= statementCacheSize, let oldest = preparedOrder.first {
            preparedOrder.removeFirst()
            if let name = prepared.removeValue(forKey: oldest) {
                // Not through execute: a pending BEGIN must travel with the statement it opens.
                _ = try? await simple("DEALLOCATE \(name.text)")
            }
        }
        let name = StatementName("passion_\(nextStatement)")
        nextStatement += 1
        // Pending transaction statements stay pending: PQsendPrepare is its own message.
        guard PQsendPrepare(connection, name.cString, sql.text, Int32(sql.parameters.count), nil) == 1 else {
            throw StoreError.connection(Self.message(connection))
        }
        _ = try await collect(sql: nil)
        prepared[key] = name
        preparedOrder.append(key)
        return name
    }

    /// Forgets every prepared statement, here and on the server: a stale plan somewhere in the
    /// pool means a schema change that may have staled any of them. If the server cannot drop
    /// them now (an aborted transaction), the next statement tries again; names are never
    /// reused, so one left behind meanwhile is never run.
    private func dropPrepared() async {
        prepared = [:]
        preparedOrder = []
        preparedInEpoch = planEpoch.current
        deallocationOwed = (try? await simple("DEALLOCATE ALL")) == nil
    }

    /// Calls `body` with C strings of `parameters` (nil is SQL NULL), valid during the call.
    /// Copied into one scratch block (on the stack when small) rather than a `strdup` each plus
    /// two arrays: a read's parameters are a few dozen bytes, not worth three allocations.
    static func withParameters<T>(_ parameters: [String?], _ body: (UnsafeBufferPointer<UnsafePointer<CChar>?>) -> T) -> T {
        let bytes = parameters.reduce(0) { total, parameter in total + (parameter.map { $0.utf8.count + 1 } ?? 0) }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: max(bytes, 1)) { text in
            withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: max(parameters.count, 1)) { pointers in
                // A block of at least one byte always has an address; without one a value would
                // silently go out as NULL, so this stops rather than send it.
                guard let base = text.baseAddress else { preconditionFailure("a scratch block without an address") }
                var offset = 0
                for index in parameters.indices {
                    guard let parameter = parameters[index] else {
                        pointers[index] = nil
                        continue
                    }
                    let start = base + offset
                    func copy(_ utf8: UnsafeBufferPointer<UInt8>) -> Int {
                        UnsafeMutableRawBufferPointer(start: start, count: utf8.count).copyMemory(from: UnsafeRawBufferPointer(utf8))
                        return utf8.count
                    }
                    // A native string's bytes in place; `withUTF8` needs a mutable copy of the
                    // string (a retain and release per value), kept for bridged strings.
                    let count = parameter.utf8.withContiguousStorageIfAvailable(copy) ?? {
                        var bridged = parameter
                        return bridged.withUTF8(copy)
                    }()
                    start[count] = 0
                    pointers[index] = UnsafePointer(start)
                    offset += count + 1
                }
                return body(UnsafeBufferPointer(rebasing: pointers[..<parameters.count]))
            }
        }
    }

    static func message(_ connection: OpaquePointer) -> String {
        String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func rows(from result: OpaquePointer?, sql: String?) throws -> Rows {
        try read(result, sql: sql, Rows.init)
    }

    /// `read`'s answer from a successful result, or the result's error. The result is freed
    /// with the last reference to its storage (at once, unless the answer is `Rows`).
    private func read<Value>(_ result: OpaquePointer?, sql: String?, _ read: (ResultStorage) throws -> Value) throws -> Value {
        guard let result else {
            throw StoreError.connection(Self.message(connection))
        }
        let storage = ResultStorage(result)
        let status = PQresultStatus(result)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK || status == PGRES_EMPTY_QUERY else {
            var error = Self.error(from: result, connection: connection)
            if let sql, prepared[StatementKey(sql)] != nil {
                if Self.isStalePlan(result) {
                    // A plan the schema staled (`PlanEpoch`): every connection prepares anew.
                    error.stalePlan = true
                    planEpoch.advance(from: preparedInEpoch)
                } else if error.sqlState == "26000" {
                    // The server does not know the name (something else deallocated it): named
                    // again next time.
                    let key = StatementKey(sql)
                    prepared[key] = nil
                    preparedOrder.removeAll { $0 == key }
                }
            }
            throw error
        }
        return try read(storage)
    }

    static func error(from result: OpaquePointer, connection: OpaquePointer) -> StoreError {
        func field(_ code: Int32) -> String? {
            PQresultErrorField(result, code).map { String(cString: $0) }
        }
        let state = field(passion_pg_diag_sqlstate()) ?? (PQstatus(connection) == CONNECTION_OK ? "XX000" : "08006")
        let message = field(passion_pg_diag_message()) ?? String(cString: PQerrorMessage(connection))
        var error = StoreError(
            sqlState: state, serverMessage: message, constraint: field(passion_pg_diag_constraint()),
            table: field(passion_pg_diag_table()), column: field(passion_pg_diag_column()))
        error.detail = field(passion_pg_diag_detail())
        error.hint = field(passion_pg_diag_hint())
        return error
    }
}
