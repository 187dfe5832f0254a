import Foundation
import PassionAPI
import PassionClient
import PassionIdentity
import PassionRPC
import PassionServices
import PassionStore
import PassionTLS
import PassionTestSupport
import Testing

/// Two real `passion-server` processes on one database behind a real HAProxy (TCP mode, TLS
/// passed through): what README's "Running more than one instance" promises.
@Suite("Two instances behind HAProxy")
struct MultiInstanceTests {
    static let keys = ["gateway": "multi-gateway-key", "progress": "multi-progress-key"]

    /// One running instance and how to reach it directly.
    struct Instance {
        let process: Executables.Server
        let metricsPort: Int
        let caPath: String

        func connect(port: Int? = nil) async throws -> ClientConnection {
            try await ClientConnection.connect(ClientConnectionConfiguration(
                host: "127.0.0.1", port: port ?? Int(process.port) ?? 0,
                tls: .client(serverHostname: "127.0.0.1", trustRootsPath: caPath)))
        }

        func metrics() async throws -> Exposition {
            Exposition(try await httpRequest(port: metricsPort, path: "/metrics").body)
        }
    }

    @Test("calls spread over both; an award through one reaches the other's Subscribe and both leaderboards; a sign-out on one is refused on the other; the daily jobs run once in all")
    func twoInstances() async throws {
        let (pool, name) = try await TestDatabase.freshPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let postgres = try await TestDatabase.shared()
        let directory = NSTemporaryDirectory() + "passion-fleet-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func hash(_ name: String) -> String {
            ServiceAccount.keyHash(Self.keys[name] ?? "").map { String(format: "%02x", $0) }.joined()
        }
        let accounts: [[String: Any]] = [
            ["name": "gateway", "key_sha256": hash("gateway"), "scopes": ["auth:signin"]],
            ["name": "progress", "key_sha256": hash("progress"), "scopes": ["progress:write"]],
        ]
        let keysPath = directory + "/service-keys.json"
        try JSONSerialization.data(withJSONObject: ["services": accounts]).write(to: URL(fileURLWithPath: keysPath))
        let arguments = [
            "--port", "0", "--database-url", "host=\(postgres.socketDirectory) port=5432 user=postgres dbname=\(name)",
            "--service-keys", keysPath, "--data-dir", directory,
        ]
        // One after the other: the first writes the development certificate both then serve.
        let a = try await Self.start(arguments, directory: directory)
        defer { kill(a.process.pid, SIGKILL) }
        let b = try await Self.start(arguments, directory: directory)
        defer { kill(b.process.pid, SIGKILL) }
        let proxy = try await HAProxy.start(backends: [Int(a.process.port) ?? 0, Int(b.process.port) ?? 0], directory: directory)
        defer { proxy.stop() }

        // Spread: HAProxy deals connections round-robin; each connection's call lands on one.
        for _ in 0..<4 {
            let connection = try await a.connect(port: proxy.port)
            _ = try await connection.health.check(HealthCheckRequest())
            await connection.close()
        }
        for instance in [a, b] {
            let calls = try await instance.metrics().total("passion_rpc_calls_finished_total", ["method": "Check"])
            #expect(calls == 2, "round-robin gives each instance two of the four connections")
        }

        let toA = try await a.connect()
        let toB = try await b.connect()
        let gateway = CallOptions.service(key: Self.keys["gateway"] ?? "")
        func signIn(_ email: String) async throws -> SignInResponse {
            try await toA.auth.signIn(options: gateway) {
                $0.identity = VerifiedIdentity.with {
                    $0.provider = .google
                    $0.providerUserID = "sub-" + email
                    $0.email = email
                    $0.emailVerified = true
                    $0.displayName = email
                }
            }
        }
        let player = try await signIn("player@example.com")
        let rival = try await signIn("rival@example.com")

        // An award through A reaches a Subscribe on B.
        let stream = try await toB.progress.subscribe(
            SubscribeRequest.with { $0.heartbeatSeconds = 1 }, options: .session(player.sessionToken))
        var events = stream.makeAsyncIterator()
        while let item = try await events.next() {
            if case .heartbeat? = item.item { break }
        }
        let award = try await toA.progress.awardXP(options: .service(key: Self.keys["progress"] ?? "")) {
            $0.userID = player.user.id
            $0.points = 500
            $0.reason = "grant"
            $0.idempotencyKey = "fleet-award"
        }
        var received: ProgressEvent?
        while let item = try await events.next() {
            if case .event(let event)? = item.item, event.type == .xpAwarded {
                received = event
                break
            }
        }
        #expect(received?.id == award.events.first { $0.type == .xpAwarded }?.id)

        // ... and both instances' leaderboards, above a user without XP.
        for connection in [toA, toB] {
            let board = try await connection.progress.leaderboard(LeaderboardRequest(), options: .session(player.sessionToken))
            #expect(board.me.xp == award.progress.totalXp && board.me.rank == 1 && board.rankedUsers == 1)
        }
        let unranked = try await toB.progress.leaderboard(LeaderboardRequest(), options: .session(rival.sessionToken))
        #expect(unranked.me.rank == 2 && unranked.aroundMe.map(\.userID) == [player.user.id, rival.user.id])

        // A sign-out on A is refused on B. A session B has not verified is refused at once; one
        // B verified in the last 2 s (its session cache) is refused once that entry expires.
        let second = try await signIn("player@example.com")
        _ = try await toA.users.me(MeRequest(), options: .session(second.sessionToken))
        _ = try await toA.auth.signOut(SignOutRequest(), options: .session(second.sessionToken))
        let refused = await expectRPCError(.unauthenticated) {
            _ = try await toB.users.me(MeRequest(), options: .session(second.sessionToken))
        }
        #expect(refused?.details?.reason == "TOKEN_REVOKED")

        await toA.close()
        await toB.close()
        // Each instance's first check of the daily jobs begins as it starts and ends before it
        // exits (a drain waits for it): once both have exited, both have checked, and each job
        // ran once in all.
        #expect(try await a.process.stop() == 0)
        #expect(try await b.process.stop() == 0)
        let ran = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT details ->> 'job' AS job, count(*) AS n FROM audit_logs WHERE details ->> 'schedule' = 'daily' GROUP BY 1
                """).map { (try $0.require("job", as: String.self), try $0.require("n", as: Int.self)) }
        }
        #expect(Dictionary(uniqueKeysWithValues: ran) == Dictionary(uniqueKeysWithValues: MaintenanceJob.all.map { ($0.name, 1) }))
    }

    static func start(_ arguments: [String], directory: String) async throws -> Instance {
        let process = try await Executables.startServer(arguments, directory: directory)
        try #require(process.firstLine.contains("listening on"), "\(process.firstLine)")
        let output = (try? String(contentsOfFile: process.outputPath, encoding: .utf8)) ?? ""
        let line = try #require(output.split(separator: "\n").first { $0.contains("metrics on http://127.0.0.1:") })
        let port = try #require(Int(line.split(separator: ":").last?.split(separator: "/").first ?? ""))
        return Instance(process: process, metricsPort: port, caPath: directory + "/tls/ca.pem")
    }
}

/// Debian's haproxy in TCP mode in front of `backends`, round-robin per connection.
struct HAProxy {
    let pid: pid_t
    let port: Int

    static func start(backends: [Int], directory: String) async throws -> HAProxy {
        let binary = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let path = try #require(binary, "haproxy is not installed: tools/setup installs it")
        let port = try freePort()
        let servers = backends.enumerated().map { "    server s\($0.offset) 127.0.0.1:\($0.element)" }.joined(separator: "\n")
        let configuration = directory + "/haproxy.cfg"
        try """
            global
                maxconn 256
            defaults
                mode tcp
                timeout connect 5s
                timeout client 2m
                timeout server 2m
            frontend passion
                bind 127.0.0.1:\(port)
                default_backend instances
            backend instances
                balance roundrobin
            \(servers)

            """.write(toFile: configuration, atomically: true, encoding: .utf8)
        // In daemon mode haproxy exits once its listener is bound (or it failed): no wait.
        let pidFile = directory + "/haproxy.pid"
        let status = try Subprocess.run(path, ["-D", "-p", pidFile, "-f", configuration], outputPath: directory + "/haproxy.out")
        let output = (try? String(contentsOfFile: directory + "/haproxy.out", encoding: .utf8)) ?? ""
        guard status == 0, let pid = pid_t((try? String(contentsOfFile: pidFile, encoding: .utf8))?.split(separator: "\n").first ?? "") else {
            throw RPCError(code: .unavailable, message: "haproxy did not start (\(status)): \(output)")
        }
        return HAProxy(pid: pid, port: port)
    }

    /// The daemon is not our child: it is signalled, not waited for.
    func stop() {
        kill(pid, SIGTERM)
    }

    /// A port the kernel just handed out and took back.
    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(descriptor, raw, length) == 0 && getsockname(descriptor, raw, &length) == 0
            }
        }
        guard bound else { throw RPCError(code: .internal, message: "no free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
