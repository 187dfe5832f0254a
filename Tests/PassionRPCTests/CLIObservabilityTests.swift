import Foundation
import NIOCore
import PassionRPCServer
import PassionStore
import PassionTestSupport
import Synchronization
import Testing

/// What an operator and a developer see of a call from outside: the trace id the CLI sends and
/// prints, the server's JSON log lines (never a token or a payload), and its `/metrics`.
@Suite("Command line: traces, logs and metrics")
struct CLIObservabilityTests {
    private func passion(_ server: TestServer, _ arguments: [String]) async throws -> Executables.Result {
        try await Executables.run("passion", arguments + ["--server", "127.0.0.1:\(server.port)", "--ca", server.certificates.caPath])
    }

    private static func traceID(in stderr: String) -> String? {
        stderr.split(separator: "\n").first { $0.hasPrefix("Trace ID: ") }.map { String($0.dropFirst("Trace ID: ".count)) }
    }

    @Test("call -v prints the trace id it sent; the server's error details carry the same; a given traceparent is kept")
    func callTraceID() async throws {
        try await TestServer.with { server in
            let failed = try await passion(server, ["call", "-v", "Diagnostics/Fail", "-d", #"{"code":5,"message":"gone"}"#])
            #expect(failed.status == 64 + 5)
            let sent = try #require(Self.traceID(in: failed.stderr), "\(failed.stderr)")
            #expect(sent.count == 32 && sent.allSatisfy(\.isHexDigit))
            #expect(failed.stderr.contains("trace-id: \(sent)"), "\(failed.stderr)")

            let given = "4bf92f3577b34da6a3ce929d0e0e4736"
            let kept = try await passion(server, [
                "call", "-v", "-H", "traceparent: 00-\(given)-00f067aa0ba902b7-01", "Diagnostics/Echo", "-d", "{}",
            ])
            #expect(kept.status == 0, "\(kept.stderr)")
            #expect(Self.traceID(in: kept.stderr) == given)
        }
    }

    @Test("bench --trace sends a new traceparent per call; a fraction outside 0–1 is a usage error")
    func benchTrace() async throws {
        // Echo, answered by a handler that keeps every call's trace.
        let seen = Mutex<[TraceContext?]>([])
        let echo = MethodDescriptor(service: "passion.v1.Diagnostics", method: "Echo", kind: .unary)
        try await TestServer.with(routes: { router in
            router.register(echo, .unary { request, context in
                seen.withLock { $0.append(TraceContext(metadata: context.requestMetadata)) }
                return ByteBuffer()
            })
        }) { server in
            // The closed loop, then the open one, which starts its calls from event-loop callbacks.
            for rate in [[], ["--rate", "200"]] {
                let traced = try await passion(server, [
                    "bench", "Diagnostics/Echo", "-d", "{}", "--trace", "0.5", "--duration", "1s", "--warmup", "0s", "--json",
                ] + rate)
                #expect(traced.status == 0, "\(traced.stderr)")
            }
            let traces = seen.withLock { $0 }
            #expect(!traces.isEmpty)
            #expect(traces.allSatisfy { $0 != nil }, "a call without a valid traceparent")
            #expect(Set(traces.compactMap { $0?.traceIDHex }).count == traces.count, "a trace id sent twice")
            let bad = try await passion(server, ["bench", "Diagnostics/Echo", "-d", "{}", "--trace", "1.5"])
            #expect(bad.status == 64)
            #expect(bad.stderr.contains("--trace"))
        }
    }

    @Test("passion-server --log-format json: JSON lines, failed calls with method, code and trace id, no token or payload; /metrics and /ready")
    func serverLogsAndMetrics() async throws {
        let (pool, name) = try await TestDatabase.freshPool(size: 1)
        await pool.shutdown()
        let postgres = try await TestDatabase.shared()
        let directory = NSTemporaryDirectory() + "passion-logs-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = try await Executables.startServer([
            "--port", "0", "--database-url", "host=\(postgres.socketDirectory) port=5432 user=postgres dbname=\(name)",
            "--log-format", "json", "--slow-call-threshold", "1ms", "--diagnostics", "anyone",
        ], directory: directory)
        #expect(process.firstLine.contains("listening on"), "\(process.firstLine)")
        let output = (try? String(contentsOfFile: process.outputPath, encoding: .utf8)) ?? ""
        let metricsLine = try #require(output.split(separator: "\n").first { $0.contains("metrics on http://127.0.0.1:") })
        let metricsPort = try #require(Int(metricsLine.split(separator: ":").last?.split(separator: "/").first ?? ""))
        let client = ["--server", "127.0.0.1:\(process.port)", "--ca", directory + "/.passion/tls/ca.pem"]

        let payload = Data("secret-payload-7f3a".utf8).base64EncodedString()
        let echo = try await Executables.run("passion", ["call", "Diagnostics/Echo", "-d", #"{"payload":"\#(payload)"}"#] + client)
        #expect(echo.status == 0, "\(echo.stderr)")
        let refused = try await Executables.run("passion", ["call", "-v", "Users/Me", "--token", "tok-secret-91c2"] + client)
        #expect(refused.status == 64 + 16, "\(refused.stderr)")
        let trace = try #require(Self.traceID(in: refused.stderr))

        let ready = try await httpRequest(port: metricsPort, path: "/ready")
        #expect(ready.status == 200)
        let metrics = Exposition(try await httpRequest(port: metricsPort, path: "/metrics").body)
        #expect(metrics.value("passion_rpc_calls_finished_total", ["method": "Me", "code": "UNAUTHENTICATED"]) == 1)
        #expect(metrics.value("passion_rpc_calls_finished_total", ["method": "Echo", "code": "OK"]) == 1)
        // The CLI's reflection lookup carries the bad token too: every UNAUTHENTICATED answer is one failure.
        let unauthenticated = metrics.total("passion_rpc_calls_finished_total", ["code": "UNAUTHENTICATED"])
        #expect(unauthenticated >= 1)
        #expect(metrics.value("passion_auth_failures_total", ["reason": "TOKEN_MALFORMED"]) == unauthenticated)
        #expect(try await process.stop() == 0)

        let log = process.log
        let lines = log.split(separator: "\n")
        #expect(!lines.isEmpty)
        var objects: [[String: Any]] = []
        for line in lines {
            let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            #expect(object != nil, "not a JSON object: \(line)")
            if let object { objects.append(object) }
        }
        #expect(objects.contains {
            $0["message"] as? String == "call failed" && $0["method"] as? String == "passion.v1.Users/Me"
                && $0["code"] as? String == "UNAUTHENTICATED" && $0["trace_id"] as? String == trace && $0["principal"] as? String == "anonymous"
        }, "\(log)")
        for secret in ["tok-secret-91c2", "secret-payload-7f3a", payload] {
            #expect(!log.contains(secret), "the log holds \(secret)")
        }
    }

    @Test("bad observability flags stop the server before anything starts, each named")
    func badFlags() async throws {
        let directory = NSTemporaryDirectory() + "passion-obs-flags-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cases: [([String], String)] = [
            (["--log-format", "xml"], "--log-format"),
            (["--slow-call-threshold", "fast"], "--slow-call-threshold"),
            (["--metrics-address", "9464"], "--metrics-address"),
            (["--metrics-address", "127.0.0.1:99999"], "--metrics-address"),
        ]
        for (flags, message) in cases {
            let result = try await Executables.run("passion-server", ["--port", "0"] + flags, directory: directory)
            #expect(result.status != 0, "\(flags)")
            #expect(result.stderr.contains(message), "\(flags): \(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: directory + "/.passion/postgres"), "a database started for a bad flag")
    }
}
