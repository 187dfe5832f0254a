import Foundation
import InMemoryTracing
import Logging
import PassionClient
import PassionRPCServer
import PassionStore
@testable import PassionTelemetry
import PassionTestSupport
import Synchronization
import Testing
import Tracing

/// A caller's `traceparent` followed through a real server and a real PostgreSQL: the call's
/// span continues the caller's trace, each statement gets a child span, every log line of the
/// call names the trace, and so does the statement `pg_stat_activity` shows waiting.
@Suite("Tracing")
struct TracingTests {
    private static let method = MethodDescriptor(service: "t.Traced", method: "WaitForLock", kind: .unary)

    /// The time limit bounds a hang: nothing here waits on a clock.
    @Test("a traceparent reaches the span, the statement spans, the logs, the error details and pg_stat_activity", .timeLimit(.minutes(1)))
    func traceparent() async throws {
        let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
        let callerSpan = "00f067aa0ba902b7"
        let lockKey = Int.random(in: 1...1_000_000_000)
        let tracer = InMemoryTracer()
        let (pool, _) = try await TestDatabase.freshPool(size: 2) { $0.tracer = tracer }
        defer { Task { await pool.shutdown() } }
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "traced") { label in
            JSONLogHandler(
                label: label, metadataProvider: LoggingSetup.traceMetadata, now: { (0, 0) },
                output: { line in lines.withLock { $0.append(String(decoding: line, as: UTF8.self)) } })
        }
        logger.logLevel = .info
        let handlerLogger = logger
        // The handler says when it is about to send the statement that waits on the test's lock.
        let (aboutToWait, waitingSignal) = AsyncStream.makeStream(of: Void.self)
        let server = try await TestServer.start(
            configure: { $0.tracer = tracer },
            routes: { router in
                router.register(Self.method, .unary { _, _ in
                    handlerLogger.info("waiting for the test's lock")
                    try await pool.transaction { connection in
                        waitingSignal.yield()
                        return try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))")
                    }
                    throw RPCError(code: .failedPrecondition, message: "done waiting")
                })
            }, logger: logger)
        let connection = try await server.connect()
        let holder = try PostgresConnection(conninfo: pool.configuration.conninfo)
        try await holder.query("SELECT pg_advisory_lock(\(lockKey))")

        var metadata = Metadata()
        metadata.add("traceparent", "00-\(traceID)-\(callerSpan)-01")
        // The in-memory tracer's own propagation keys, standing for what OTel reads from traceparent.
        metadata.add(InMemoryTracer.traceIDKey, traceID)
        metadata.add(InMemoryTracer.spanIDKey, callerSpan)
        let call = Task {
            try await connection.unary(Self.method, EchoRequest(), as: EchoResponse.self, options: CallOptions(metadata: metadata))
        }
        // The statement waits on the lock this test holds, so it stays in pg_stat_activity until
        // released; once the handler is about to send it, it shows within a few round trips.
        for await _ in aboutToWait { break }
        var waiting: [String] = []
        while waiting.isEmpty {
            let rows = try await holder.query("""
                SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE \("%" + traceID + "%")
                """)
            waiting = try rows.map { try $0.require("query", as: String.self) }
            await Task.yield()
        }
        #expect(waiting.count == 1)
        #expect(waiting.first?.hasPrefix("/* traceparent=00-\(traceID)-") == true)
        #expect(waiting.first?.contains("pg_advisory_xact_lock") == true)
        try await holder.query("SELECT pg_advisory_unlock(\(lockKey))")

        let error = await expectRPCError(.failedPrecondition) { try await call.value }
        #expect(error?.details?.fields["trace-id"] == traceID)
        await connection.close()
        await server.stop()

        let spans = tracer.finishedSpans.filter { $0.traceID == traceID }
        let callSpan = spans.first { $0.operationName == "t.Traced/WaitForLock" }
        #expect(callSpan?.parentSpanID == callerSpan)
        #expect(callSpan?.kind == .server)
        #expect(callSpan?.attributes.get("rpc.passion.status_code") == .string("FAILED_PRECONDITION"))
        #expect(callSpan?.attributes.get("passion.principal") == .string("anonymous"))
        let statementSpans = spans.filter { $0.operationName.hasPrefix("db ") }
        // BEGIN travels with the statement; the lock and COMMIT each have their own.
        #expect(statementSpans.contains { $0.operationName == "db SELECT" })
        for span in statementSpans {
            #expect(span.parentSpanID == callSpan?.spanID)
            #expect(span.kind == .client)
            var texts: [String] = []
            span.attributes.forEach { _, value in texts.append("\(value)") }
            #expect(!texts.contains { $0.contains("pg_advisory") || $0.contains("\(lockKey)") }, "\(texts)")
        }

        let logged = lines.withLock { $0 }
        #expect(logged.contains { $0.contains("waiting for the test's lock") && $0.contains("\"trace_id\":\"\(traceID)\"") })
        #expect(logged.contains {
            $0.contains("call failed") && $0.contains("\"trace_id\":\"\(traceID)\"") && $0.contains("FAILED_PRECONDITION")
        })
    }

    @Test("without a traceparent: no trace in logs or details, and statements stay prepared")
    func untraced() async throws {
        let (pool, _) = try await TestDatabase.freshPool(size: 1)
        defer { Task { await pool.shutdown() } }
        let method = MethodDescriptor(service: "t.Traced", method: "Plain", kind: .unary)
        let server = try await TestServer.start(routes: { router in
            router.register(method, .unary { _, _ in
                try await pool.withConnection { try await $0.query("SELECT 1 AS one") }
                throw RPCError(code: .notFound, message: "nothing")
            })
        })
        let connection = try await server.connect()
        let error = await expectRPCError(.notFound) {
            try await connection.unary(method, EchoRequest(), as: EchoResponse.self, options: .defaults)
        }
        #expect(error?.details?.fields["trace-id"] == nil)
        await connection.close()
        await server.stop()
        let prepared = try await pool.withConnection {
            try await $0.query("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE statement = 'SELECT 1 AS one'")
        }
        #expect(try prepared.first?.require("n", as: Int.self) == 1)
    }
}
