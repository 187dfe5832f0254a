import CLibPQ
import Foundation

/// One libpq connection. Blocking: used only from the pool's threads, one caller at a time.
///
/// `@unchecked Sendable`: the pool hands a connection to exactly one thread at a time; the only
/// member touched concurrently is `cancel()`, which uses libpq's thread-safe `PGcancel`.
public final class PostgresConnection: @unchecked Sendable {
    private let connection: OpaquePointer
    private let canceller: OpaquePointer?
    private var prepared: [String: String] = [:]
    private var preparedOrder: [String] = []
    private let statementCacheSize: Int
    private var nextStatement = 0
    /// Statements opening a transaction that are not sent yet: they travel with the
    /// transaction's first statement, saving a round trip each.
    private var pendingTransactionStart: [String] = []
    /// When the pool last put the connection back (written and read under the pool's lock).
    var idleSince = ContinuousClock.now

    /// Connects with a libpq conninfo string or URI; throws UNAVAILABLE-class errors.
    public init(conninfo: String, statementCacheSize: Int = 256) throws {
        guard let connection = PQconnectdb(conninfo) else { throw StoreError.connection("out of memory") }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(connection)).trimmingCharacters(in: .whitespacesAndNewlines)
            PQfinish(connection)
            throw StoreError.connection(message)
        }
        self.connection = connection
        self.canceller = PQgetCancel(connection)
        self.statementCacheSize = statementCacheSize
        // Text results must parse the same way whatever the server's defaults are.
        _ = try execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'")
    }

    deinit {
        if let canceller { PQfreeCancel(canceller) }
        PQfinish(connection)
    }

    /// Whether the connection is still usable.
    public var isHealthy: Bool { PQstatus(connection) == CONNECTION_OK }

    /// For an idle pooled connection: whether the server has closed it meanwhile (restart,
    /// admin termination). A pooled connection never LISTENs, so its idle socket has nothing to
    /// read unless the server said goodbye (a FATAL message, then EOF); a zero-timeout poll
    /// tells without a round trip.
    func isStillOpen() -> Bool {
        var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
        guard descriptor.fd >= 0, isHealthy else { return false }
        return poll(&descriptor, 1, 0) == 0
    }

    /// Asks the server to cancel the statement running now; safe from any thread.
    public func cancel() {
        guard let canceller else { return }
        var buffer = [CChar](repeating: 0, count: 256)
        _ = PQcancel(canceller, &buffer, Int32(buffer.count))
    }

    /// Waits up to `timeoutMilliseconds` for NOTIFY messages on channels this connection LISTENs
    /// to; returns those that arrived (possibly none). Throws when the connection is lost.
    public func waitForNotifications(timeoutMilliseconds: Int32) throws -> [(channel: String, payload: String)] {
        var notifications = drainNotifications()
        guard notifications.isEmpty else { return notifications }
        var descriptor = pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0)
        guard descriptor.fd >= 0 else { throw StoreError.connection("listener connection closed") }
        let ready = poll(&descriptor, 1, timeoutMilliseconds)
        guard ready >= 0 || errno == EINTR else { throw StoreError.connection("poll failed") }
        if ready > 0 {
            guard PQconsumeInput(connection) == 1 else {
                throw StoreError.connection(String(cString: PQerrorMessage(connection)))
            }
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

    /// Runs a statement through the prepared-statement cache.
    @discardableResult
    public func query(_ sql: SQL) throws -> Rows {
        let name = try preparedName(for: sql)
        var copies = sql.parameters.map { $0.flatMap { strdup($0) } }
        defer { for pointer in copies { free(pointer) } }
        let prologue = pendingTransactionStart
        pendingTransactionStart = []
        if !prologue.isEmpty {
            return try copies.withUnsafeMutableBufferPointer { buffer in
                try pipelined(prologue: prologue, name: name, values: buffer.map { UnsafePointer<CChar>($0) }, sql: sql.text)
            }
        }
        let result = copies.withUnsafeMutableBufferPointer { buffer -> OpaquePointer? in
            let values = buffer.map { UnsafePointer<CChar>($0) }
            return PQexecPrepared(connection, name, Int32(values.count), values, nil, nil, 0)
        }
        return try rows(from: result, dropPreparedOnFailure: name, sql: sql.text)
    }

    /// Runs SQL without parameters and without preparing it (migrations, SET, BEGIN).
    @discardableResult
    public func execute(_ text: String) throws -> Rows {
        let prologue = pendingTransactionStart
        pendingTransactionStart = []
        // The simple protocol takes several statements in one message; an explicit BEGIN among
        // them keeps the transaction open after the message.
        let message = prologue.isEmpty ? text : (prologue + [text]).joined(separator: "; ")
        return try rows(from: PQexec(connection, message), dropPreparedOnFailure: nil, sql: nil)
    }

    /// Opens a transaction lazily: `statements` (BEGIN, SET LOCAL ...) go out together with the
    /// next statement, in one round trip.
    func beginTransaction(_ statements: [String]) {
        pendingTransactionStart = statements
    }

    /// Commits the transaction; a transaction that never ran a statement costs nothing.
    func commitTransaction() throws {
        guard pendingTransactionStart.isEmpty else {
            pendingTransactionStart = []
            return
        }
        try execute("COMMIT")
    }

    /// Rolls back after a failure, never throwing: a broken connection is noticed by the pool.
    func rollbackTransaction() {
        guard pendingTransactionStart.isEmpty else {
            pendingTransactionStart = []
            return
        }
        _ = try? execute("ROLLBACK")
    }

    /// Sends `prologue` and one prepared statement as a libpq pipeline and returns the
    /// statement's rows; the first failure among them is thrown.
    private func pipelined(prologue: [String], name: String, values: [UnsafePointer<CChar>?], sql: String) throws -> Rows {
        guard PQenterPipelineMode(connection) == 1 else {
            throw StoreError.connection(String(cString: PQerrorMessage(connection)))
        }
        defer { PQexitPipelineMode(connection) }
        var sent = true
        for statement in prologue {
            sent = sent && PQsendQueryParams(connection, statement, 0, nil, nil, nil, nil, 0) == 1
        }
        sent = sent && PQsendQueryPrepared(connection, name, Int32(values.count), values, nil, nil, 0) == 1
        sent = sent && PQpipelineSync(connection) == 1
        guard sent else { throw StoreError.connection(String(cString: PQerrorMessage(connection))) }

        var failure: (any Error)?
        var statementRows: Rows?
        var index = 0
        var consecutiveEnds = 0
        while true {
            guard let result = PQgetResult(connection) else {
                // NULL ends one statement's results; two in a row means nothing more will come.
                consecutiveEnds += 1
                index += 1
                if consecutiveEnds > 1 || !isHealthy { break }
                continue
            }
            consecutiveEnds = 0
            let status = PQresultStatus(result)
            if status == PGRES_PIPELINE_SYNC {
                PQclear(result)
                break
            }
            if status == PGRES_PIPELINE_ABORTED {
                PQclear(result)
                continue
            }
            do {
                let rows = try self.rows(from: result, dropPreparedOnFailure: index == prologue.count ? name : nil, sql: index == prologue.count ? sql : nil)
                if index == prologue.count { statementRows = rows }
            } catch {
                if failure == nil { failure = error }
            }
        }
        if let failure { throw failure }
        guard let statementRows else {
            throw StoreError.connection(isHealthy ? "pipeline ended without a result" : String(cString: PQerrorMessage(connection)))
        }
        return statementRows
    }

    private func preparedName(for sql: SQL) throws -> String {
        if let name = prepared[sql.text] { return name }
        if prepared.count >= statementCacheSize, let oldest = preparedOrder.first {
            preparedOrder.removeFirst()
            if let name = prepared.removeValue(forKey: oldest) {
                PQclear(PQexec(connection, "DEALLOCATE \(name)"))
            }
        }
        let name = "passion_\(nextStatement)"
        nextStatement += 1
        let result = PQprepare(connection, name, sql.text, Int32(sql.parameters.count), nil)
        _ = try rows(from: result, dropPreparedOnFailure: nil, sql: sql.text)
        prepared[sql.text] = name
        preparedOrder.append(sql.text)
        return name
    }

    private func rows(from result: OpaquePointer?, dropPreparedOnFailure name: String?, sql: String?) throws -> Rows {
        guard let result else {
            throw StoreError.connection(String(cString: PQerrorMessage(connection)))
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK || status == PGRES_EMPTY_QUERY else {
            let error = Self.error(from: result, connection: connection)
            // A statement whose plan became invalid (schema changed) is prepared again next time.
            if error.sqlState == "0A000" || error.sqlState == "26000", let sql {
                prepared[sql] = nil
                preparedOrder.removeAll { $0 == sql }
            }
            _ = name
            throw error
        }
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        let columns = (0..<columnCount).map { String(cString: PQfname(result, Int32($0))) }
        var values: [[String?]] = []
        values.reserveCapacity(rowCount)
        for row in 0..<rowCount {
            var record: [String?] = []
            record.reserveCapacity(columnCount)
            for column in 0..<columnCount {
                if PQgetisnull(result, Int32(row), Int32(column)) == 1 {
                    record.append(nil)
                } else {
                    record.append(String(cString: PQgetvalue(result, Int32(row), Int32(column))))
                }
            }
            values.append(record)
        }
        let affected = Int(String(cString: PQcmdTuples(result))) ?? rowCount
        return Rows(columns: columns, values: values, affected: affected)
    }

    private static func error(from result: OpaquePointer, connection: OpaquePointer) -> StoreError {
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
