import PassionRPC
import Tracing

/// What a traced call's statements leave behind: a span per statement, and their text tagged
/// with the call's `traceparent`, so `pg_stat_activity` shows which trace a waiting statement
/// serves.
extension PostgresConnection {
    /// Runs `body` in a client span named by the statement's kind and a stable name of its text;
    /// never the text or its values, which may carry a user's data.
    static func withStatementSpan<Value>(_ sql: SQL, tracer: any Tracer, _ body: () async throws -> Value) async throws -> Value {
        let name = Self.statementName(sql.text)
        let span = tracer.startSpan("db \(name.operation)", context: InstrumentationContext.current ?? .topLevel, ofKind: .client)
        span.attributes["db.system.name"] = "postgresql"
        span.attributes["db.operation.name"] = name.operation
        span.attributes["db.statement.name"] = name.hash
        defer { span.end() }
        do {
            return try await body()
        } catch {
            if let error = error as? StoreError { span.attributes["db.response.status_code"] = error.sqlState }
            span.setStatus(SpanStatus(code: .error))
            throw error
        }
    }

    /// `/* traceparent=00-… */ ` before the statement: PostgreSQL keeps a leading comment in
    /// `pg_stat_activity.query`. The trace and span ids are hex digits only, so nothing a caller
    /// sent can end the comment.
    static func tracedText(_ sql: SQL, _ trace: TraceContext) -> String {
        "/* traceparent=\(trace.traceparent) */ " + sql.text
    }

    /// The statement's first keyword and an FNV-1a hash of its text: the same statement has the
    /// same name on every instance and after restarts.
    static func statementName(_ text: String) -> (operation: String, hash: String) {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        let operation = text.utf8.drop { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "(") }
            .prefix { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) }
        let hex = String(hash, radix: 16)
        return (String(decoding: operation, as: UTF8.self).uppercased(), "q" + String(repeating: "0", count: 16 - hex.count) + hex)
    }
}
