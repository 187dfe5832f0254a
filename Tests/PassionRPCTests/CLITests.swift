import Foundation
import PassionStore
import PassionTestSupport
import Testing
import PassionRPCServer

/// The `passion` CLI and `passion-server` binaries, run as processes.
@Suite("Command line")
struct CLITests {
    private func passion(_ server: TestServer, _ arguments: [String], stdin: String? = nil) async throws -> Executables.Result {
        try await Executables.run(
            "passion", arguments + ["--server", "127.0.0.1:\(server.port)", "--ca", server.certificates.caPath], stdin: stdin)
    }

    private func json(_ text: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try #require(object as? [String: Any])
    }

    @Test("call prints the response as JSON and exits 0")
    func callSucceeds() async throws {
        try await TestServer.with { server in
            let result = try await passion(server, ["call", "passion.v1.Diagnostics/Echo", "-d", #"{"payload":"aGVsbG8="}"#])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(try json(result.stdout)["payload"] as? String == "aGVsbG8=")
        }
    }

    @Test("a failed call exits 64 + code and prints code, message and details on stderr")
    func callFails() async throws {
        try await TestServer.with { server in
            let result = try await passion(server, [
                "call", "Diagnostics/Fail", "-d", #"{"code":9,"message":"not enough","reason":"INSUFFICIENT_FUNDS","fields":{"balance":"40"}}"#,
            ])
            #expect(result.status == 64 + 9)
            #expect(result.stderr.contains("FAILED_PRECONDITION: not enough"))
            #expect(result.stderr.contains("reason: INSUFFICIENT_FUNDS"))
            #expect(result.stderr.contains("balance: 40"))
            #expect(result.stdout.isEmpty)
        }
    }

    @Test("--deadline ends a slow call with DEADLINE_EXCEEDED (exit 68)")
    func deadline() async throws {
        try await TestServer.with { server in
            let result = try await passion(server, ["call", "Diagnostics/Sleep", "-d", #"{"durationMs":5000}"#, "--deadline", "100ms"])
            #expect(result.status == 68)
            #expect(result.stderr.hasPrefix("DEADLINE_EXCEEDED"))
        }
    }

    @Test("streams take and print newline-delimited JSON")
    func streams() async throws {
        try await TestServer.with { server in
            let server1 = try await passion(server, ["call", "Diagnostics/StreamMessages", "-d", #"{"count":3,"size":2}"#])
            #expect(server1.status == 0)
            #expect(server1.stdout.split(separator: "\n").count == 3)
            let client = try await passion(
                server, ["call", "Diagnostics/CountBytes", "-d", "@-"], stdin: "{\"payload\":\"YQ==\"}\n{\"payload\":\"YmI=\"}\n")
            #expect(client.status == 0)
            #expect(try json(client.stdout)["bytes"] as? String == "3")
        }
    }

    @Test("bad JSON and unknown methods are usage errors that send nothing")
    func usageErrors() async throws {
        try await TestServer.with { server in
            let badJSON = try await passion(server, ["call", "Diagnostics/Echo", "-d", "{not json"])
            #expect(badJSON.status == 64)
            #expect(badJSON.stderr.contains("not valid JSON"))
            let unknown = try await passion(server, ["call", "Diagnostics/Nope"])
            #expect(unknown.status == 64)
            #expect(unknown.stderr.contains("unknown method"))
        }
    }

    @Test("list, describe and health read the server")
    func inspect() async throws {
        try await TestServer.with { server in
            let services = try await passion(server, ["list"])
            #expect(services.stdout == "passion.v1.Diagnostics\npassion.v1.Health\npassion.v1.Introspection\n")
            let methods = try await passion(server, ["list", "passion.v1.Health"])
            #expect(methods.stdout == "passion.v1.Health/Check\npassion.v1.Health/Watch\n")
            let described = try await passion(server, ["describe", "passion.v1.StreamRequest"])
            #expect(described.stdout.contains("int32 interval_ms = 3;"))
            let missing = try await passion(server, ["describe", "passion.v1.Missing"])
            #expect(missing.status == 64 + 5)
            let health = try await passion(server, ["health"])
            #expect(health.status == 0 && health.stdout == "SERVING\n")
        }
    }

    @Test("global options go before the subcommand as well as after it; an unknown one is named")
    func globalOptionsFirst() async throws {
        try await TestServer.with { server in
            let before = try await Executables.run(
                "passion", ["--server", "127.0.0.1:\(server.port)", "--ca", server.certificates.caPath, "-H", "x-a: b", "list"])
            #expect(before.status == 0, "\(before.stderr)")
            #expect(before.stdout == "passion.v1.Diagnostics\npassion.v1.Health\npassion.v1.Introspection\n")
            let mixed = try await Executables.run(
                "passion", ["--server=127.0.0.1:\(server.port)", "health", "--ca", server.certificates.caPath])
            #expect(mixed.status == 0 && mixed.stdout == "SERVING\n", "\(mixed.stderr)")
            let unknown = try await Executables.run("passion", ["--no-such-option", "list"])
            #expect(unknown.status == 64)
            #expect(unknown.stderr.contains("--no-such-option"))
        }
    }

    @Test("bench --json prints calls, errors, qps and percentiles")
    func bench() async throws {
        try await TestServer.with { server in
            let result = try await passion(server, [
                // No warmup: a call that starts in the window counts, so even a machine too busy
                // to finish one call in the second (the whole suite runs at once) reports calls.
                "bench", "Diagnostics/Echo", "-d", #"{"payload":"aGk="}"#, "--connections", "2", "--concurrency", "4",
                "--duration", "1s", "--warmup", "0s", "--json",
            ])
            #expect(result.status == 0, "\(result.stderr)")
            let report = try json(result.stdout)
            for key in ["calls", "errors", "qps", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
                #expect(report[key] != nil, "missing \(key)")
            }
            #expect((report["calls"] as? Int ?? 0) > 0)
            #expect((report["errors"] as? [String: Any])?.isEmpty == true)
        }
    }

    @Test("bench fills {{seq}} per call; an unknown or empty placeholder is a usage error before any call")
    func benchPlaceholders() async throws {
        try await TestServer.with { server in
            // Each call asks for as many response bytes as its number: a request the template
            // could not make would fail the call (or the bench) instead.
            let filled = try await passion(server, [
                "bench", "Diagnostics/Echo", "-d", #"{"responseSize": {{seq}}}"#, "--connections", "1", "--concurrency", "2",
                "--duration", "1s", "--warmup", "0s", "--json",
            ])
            #expect(filled.status == 0, "\(filled.stderr)")
            let report = try json(filled.stdout)
            #expect((report["calls"] as? Int ?? 0) > 0 && (report["errors"] as? [String: Any])?.isEmpty == true, "\(filled.stdout)")
            for bad in ["{{bogus}}", "{{rand:0}}", "{{seq:-3}}"] {
                let refused = try await passion(server, [
                    "bench", "Diagnostics/Echo", "-d", #"{"payload":"aGk="}"#, "--as-user", "00000000-0000-0000-0000-" + bad,
                    "--duration", "1s", "--json",
                ])
                #expect(refused.status == 64 && refused.stderr.contains("unknown placeholder"), "\(bad): \(refused.stderr)")
                #expect(refused.stdout.isEmpty)
            }
        }
    }

    @Test("bench --rate makes exactly rate × duration calls, counted by when each was due, whatever its tick or threads")
    func benchOpenLoop() async throws {
        try await TestServer.with { server in
            // 4 workers, each due every 40 ms from its own offset (0, 10, 20, 30 ms): 50 calls
            // each fall in 2 s. The count is the schedule's, not the machine's speed: a late call
            // starts at once and its lateness counts as latency. A 300 ms tick does not divide
            // the window: the calls due in its last 100 ms go out at 1.8 s, inside the window,
            // and are still not the window's calls.
            for flags in [[], ["--tick", "0", "--threads", "2"], ["--tick", "300ms"], ["--tick", "300ms", "--threads", "2"]] {
                let result = try await passion(server, [
                    "bench", "Diagnostics/Echo", "-d", #"{"payload":"aGk="}"#, "--connections", "2", "--concurrency", "4",
                    "--rate", "100", "--duration", "2s", "--warmup", "0s", "--json",
                ] + flags)
                #expect(result.status == 0, "\(result.stderr)")
                let report = try json(result.stdout)
                let errors = (report["errors"] as? [String: Int] ?? [:]).values.reduce(0, +)
                #expect((report["calls"] as? Int ?? 0) + errors == 200, "\(flags): \(result.stdout)")
            }
        }
    }

    @Test("bench refuses a bad tick, thread count or duration as a usage error before it connects")
    func benchBadFlags() async throws {
        let cases: [([String], String)] = [
            (["--rate", "10", "--tick", "2s"], "--tick must be at most 1s"),
            (["--rate", "10", "--tick=-1ms"], "invalid duration -1ms"),
            (["--rate", "10", "--tick", "soon"], "invalid duration soon"),
            (["--duration", "inf"], "invalid duration inf"),
            (["--duration", "1e300s"], "invalid duration 1e300s"),
            (["--duration", "0s"], "--duration must be more than 0"),
            (["--threads", "3", "--connections", "2", "--concurrency", "2"], "--threads must be from 1 to --connections"),
            (["--threads", "0"], "--threads must be from 1 to --connections"),
        ]
        for (flags, message) in cases {
            // Nothing listens on port 1: a flag that got past validation would fail to connect instead.
            let result = try await Executables.run(
                "passion", ["bench", "Diagnostics/Echo", "--server", "127.0.0.1:1", "--json"] + flags)
            #expect(result.status == 64 && result.stderr.contains(message), "\(flags): \(result.stderr)")
            #expect(result.stdout.isEmpty)
        }
    }

    @Test("passion-server starts on defaults in a fresh directory, the CLI trusts its CA with no flags, SIGTERM stops it")
    func serverDefaults() async throws {
        let directory = NSTemporaryDirectory() + "passion-server-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let process = try await Executables.startServer(["--port", "0"], directory: directory)
        #expect(process.firstLine.contains("listening on 127.0.0.1:"), "\(process.firstLine)")
        let port = process.port
        #expect(FileManager.default.fileExists(atPath: directory + "/.passion/tls/ca.pem"))
        let ping = try await Executables.run("passion", ["ping", "--server", "127.0.0.1:\(port)", "-c", "1"], directory: directory)
        #expect(ping.status == 0, "\(ping.stderr)")
        #expect(ping.stdout.contains("TLSv1.3"))

        // A new user's path from the README: sign in with the development key, then call as the user.
        let keyPath = directory + "/.passion/dev-service-key"
        let attributes = try FileManager.default.attributesOfItem(atPath: keyPath)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let server = "127.0.0.1:\(port)"
        let signIn = try await Executables.run("passion", [
            "call", "passion.v1.Auth/SignIn", "--server", server, "--service-key", ".passion/dev-service-key", "-d",
            #"{"identity": {"provider": "GOOGLE", "providerUserId": "cli-1", "email": "cli@example.com"}}"#,
        ], directory: directory)
        #expect(signIn.status == 0, "\(signIn.stderr)")
        let session = try json(signIn.stdout)
        let token = session["sessionToken"] as? String ?? ""
        let userID = (session["user"] as? [String: Any])?["id"] as? String ?? ""
        let me = try await Executables.run("passion", ["call", "passion.v1.Users/Me", "--server", server, "--token=\(token)"], directory: directory)
        #expect(me.status == 0, "\(me.stderr) after sign-in printed \(signIn.stdout)")
        #expect(try json(me.stdout)["email"] as? String == "cli@example.com")
        let asUser = try await Executables.run("passion", [
            "call", "passion.v1.Settings/Get", "--server", server, "--service-key", ".passion/dev-service-key", "--as-user", userID,
        ], directory: directory)
        #expect(asUser.status == 0, "\(asUser.stderr)")
        #expect(try json(asUser.stdout)["theme"] as? String == "light")
        // The server refuses every method for a user that does not exist, introspection too: the
        // CLI says so, rather than that the method is unknown.
        let noSuchUser = try await Executables.run("passion", [
            "call", "passion.v1.Settings/Get", "--server", server, "--service-key", ".passion/dev-service-key",
            "--as-user", "00000000-0000-0000-0000-00000000dead",
        ], directory: directory)
        #expect(noSuchUser.status == 64 + 5, "NOT_FOUND exits 69: \(noSuchUser.stderr)")
        #expect(noSuchUser.stderr.contains("user not found") && !noSuchUser.stderr.contains("unknown method"), "\(noSuchUser.stderr)")
        let anonymous = try await Executables.run("passion", ["call", "passion.v1.Users/Me", "--server", server], directory: directory)
        #expect(anonymous.status == 64 + 16, "UNAUTHENTICATED exits 80: \(anonymous.stderr)")
        #expect(try await process.stop() == 0)  // SIGTERM
    }

    @Test("a second passion-server run reuses the embedded database without migrating again")
    func embeddedDataReused() async throws {
        let directory = NSTemporaryDirectory() + "passion-reuse-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try await runUntilListening(directory: directory)
        #expect(first.contains("applied migrations"), "\(first)")
        let second = try await runUntilListening(directory: directory)
        #expect(!second.contains("applied migrations"), "\(second)")
        #expect(FileManager.default.fileExists(atPath: directory + "/.passion/postgres/data/PG_VERSION"))
    }

    /// Starts passion-server in `directory`, waits for it to listen, stops it with SIGTERM and
    /// returns what it logged.
    private func runUntilListening(directory: String) async throws -> String {
        let process = try await Executables.startServer(["--port", "0"], directory: directory)
        #expect(process.firstLine.contains("listening on"), "\(process.firstLine)")
        #expect(try await process.stop() == 0)
        return process.log
    }

    @Test("with --database-url the server manages nothing: no cluster and no development key")
    func externalDatabase() async throws {
        let (pool, name) = try await TestDatabase.freshPool(size: 1)
        await pool.shutdown()
        let postgres = try await TestDatabase.shared()
        let directory = NSTemporaryDirectory() + "passion-external-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = try await Executables.startServer(
            ["--port", "0", "--database-url", "host=\(postgres.socketDirectory) port=5432 user=postgres dbname=\(name)"], directory: directory)
        #expect(process.firstLine.contains("listening on"), "\(process.firstLine)")
        #expect(!FileManager.default.fileExists(atPath: directory + "/.passion/dev-service-key"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/.passion/postgres"))
        #expect(try await process.stop() == 0)
    }

    @Test("bad identity flags stop the server before anything starts, each with a message naming it")
    func badIdentityFlags() async throws {
        let directory = NSTemporaryDirectory() + "passion-flags-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try #"{"keys": []}"#.write(toFile: directory + "/empty-jwks.json", atomically: true, encoding: .utf8)
        let hash = String(repeating: "ab", count: 32)
        try """
            {"services": [{"name": "reader", "key_sha256": "\(hash)", "scopes": ["users:read"]},
                          {"name": "intruder", "key_sha256": "\(hash)", "scopes": ["admin"]}]}
            """.write(toFile: directory + "/same-key.json", atomically: true, encoding: .utf8)
        try """
            {"services": [{"name": "game", "certificate_name": "game.internal", "scopes": ["progress:write"]},
                          {"name": "root", "certificate_name": "game.internal", "scopes": ["admin"]}]}
            """.write(toFile: directory + "/same-certificate.json", atomically: true, encoding: .utf8)
        let cases: [([String], String)] = [
            (["--session-ttl", "5x"], "--session-ttl"),
            (["--session-ttl", "10s"], "--session-ttl"),
            (["--audit-retention", "30d"], "--audit-retention must be forever or whole days like 400d, at least 90d"),
            (["--audit-retention", "1y"], "--audit-retention"),
            (["--rate-user", "fast"], "--rate-user"),
            (["--rate-service", "0"], "--rate-service"),
            (["--service-keys", directory + "/missing.json"], "cannot read service accounts file"),
            (["--oidc", "github:jwks=/x,audience=a"], "provider must be google or azure"),
            (["--oidc", "google:jwks=\(directory)/empty-jwks.json,audience=a"], "no RS256 signing key"),
            (["--service-keys", directory + "/same-key.json"], "services reader and intruder have the same key_sha256"),
            (["--service-keys", directory + "/same-certificate.json"], "services game and root have the same certificate_name"),
        ]
        for (flags, message) in cases {
            let result = try await Executables.run("passion-server", ["--port", "0"] + flags, directory: directory)
            #expect(result.status != 0, "\(flags)")
            #expect(result.stderr.contains(message), "\(flags): \(result.stderr)")
            #expect(!result.stdout.contains("listening"))
        }
        #expect(!FileManager.default.fileExists(atPath: directory + "/.passion/postgres"), "a database started for a bad flag")
    }

    @Test("the CLI refuses two identities at once and an as-user that is not a user id as usage errors (exit 64)")
    func badCredentialFlags() async throws {
        try await TestServer.with { server in
            let both = try await passion(server, ["call", "passion.v1.Users/Me", "--token", "t", "--service-key", "k"])
            #expect(both.status == 64 && both.stderr.contains("two identities"), "\(both.stderr)")
            let malformed = try await passion(server, ["call", "passion.v1.Users/Me", "--service-key", "k", "--as-user", "bob"])
            #expect(malformed.status == 64 && malformed.stderr.contains("--as-user"), "\(malformed.stderr)")
        }
    }

    @Test("an unreachable --database-url stops the server with a clear error")
    func unreachableDatabase() async throws {
        let result = try await Executables.run(
            "passion-server", ["--port", "0", "--database-url", "host=/nonexistent-socket-dir dbname=x user=x"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("cannot start the database"), "\(result.stderr)")
        #expect(!result.stdout.contains("listening"))
    }

    @Test("passion-server refuses --plaintext on a non-loopback address")
    func plaintextRefused() async throws {
        let result = try await Executables.run("passion-server", ["--plaintext", "--host", "0.0.0.0", "--port", "0"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("only allowed on a loopback address"))
    }
}
