import Foundation
import PassionClient
import PassionIdentity
import PassionStore
import PassionTLS
import PassionTestSupport
import Testing
import PassionRPCServer

@Suite("Rate limits per principal")
struct RateLimitTests {
    @Test("a bucket refills at its rate; a cost above what is left waits, with the wait reported")
    func bucket() {
        let limiter = PrincipalRateLimiter(users: RateLimit(perSecond: 10, burst: 5), services: RateLimit(perSecond: 100, burst: 100))
        let start = ContinuousClock.now
        let limit = limiter.users
        for _ in 0..<5 { #expect(limiter.take(1, key: "u", limit: limit, now: start) == nil) }
        let wait = limiter.take(1, key: "u", limit: limit, now: start)
        #expect(wait == .milliseconds(100))
        // 300 ms later three tokens are back.
        let later = start + .milliseconds(300)
        #expect(limiter.take(3, key: "u", limit: limit, now: later) == nil)
        #expect(limiter.take(1, key: "u", limit: limit, now: later) != nil)
        // Another principal has its own bucket.
        #expect(limiter.take(5, key: "v", limit: limit, now: later) == nil)
    }

    @Test("rate parsing: RATE or RATE/BURST")
    func parsing() {
        #expect(RateLimit(parsing: "50") == RateLimit(perSecond: 50, burst: 100))
        #expect(RateLimit(parsing: "50/60") == RateLimit(perSecond: 50, burst: 60))
        for bad in ["", "0", "-1", "x", "5/0", "5/", "1/2/3", "inf"] { #expect(RateLimit(parsing: bad) == nil, "\(bad)") }
    }

    @Test("over the limit: RESOURCE_EXHAUSTED with retry-after; services have their own class; costs count")
    func overTheLimit() async throws {
        try await ServiceHarness.with(configure: {
            // Refills too slow to matter however long a loaded machine takes between calls.
            $0.userRate = RateLimit(perSecond: 0.0001, burst: 3)
            $0.serviceRate = RateLimit(perSecond: 0.0001, burst: 13)
        }) { harness in
            let user = try await harness.signIn()
            for _ in 0..<3 { _ = try await harness.connection.users.me(MeRequest(), options: .session(user.token)) }
            let before = try await harness.snapshot()
            let error = await expectRPCError(.resourceExhausted) {
                try await harness.connection.users.me(MeRequest(), options: .session(user.token))
            }
            #expect(error?.details?.reason == "RATE_LIMITED")
            let retryAfter = Int(error?.details?.fields["retry-after-ms"] ?? "") ?? 0
            #expect((1...10_000_000).contains(retryAfter))  // one token at 0.0001/s: under 10,000 s
            #expect(try await harness.snapshot() == before)
            // Another user is not affected.
            let other = try await harness.signIn()
            _ = try await harness.connection.users.me(MeRequest(), options: .session(other.token))
            // A service's bucket is its own and larger; ListUsers costs 5 of its 13 tokens
            // (the two sign-ins above took 2), and the one token left still pays for a GetUser.
            let reader = ServiceHarness.service("reader")
            _ = try await harness.connection.users.listUsers(ListUsersRequest(), options: reader)
            _ = try await harness.connection.users.listUsers(ListUsersRequest(), options: reader)
            await expectRPCError(.resourceExhausted) {
                try await harness.connection.users.listUsers(ListUsersRequest(), options: reader)
            }
            _ = try await harness.connection.users.getUser(options: reader) { $0.userID = user.id }
            // Rate-limit refusals leave no audit rows (a flood must not become database writes).
            #expect(try await harness.count("SELECT count(*) AS n FROM audit_logs WHERE details->>'code' = 'RESOURCE_EXHAUSTED'") == 0)
        }
    }

    @Test("an address that keeps presenting bad credentials is refused before any lookup")
    func failedAuthentications() async throws {
        try await ServiceHarness.with(configure: { $0.authenticationFailureRate = RateLimit(perSecond: 0.0001, burst: 3) }) { harness in
            let bogus = CallOptions.session(SessionToken.generate().token)
            for _ in 0..<3 {
                await expectRPCError(.unauthenticated) { try await harness.connection.users.me(MeRequest(), options: bogus) }
            }
            let error = await expectRPCError(.resourceExhausted) {
                try await harness.connection.users.me(MeRequest(), options: bogus)
            }
            #expect(error?.details?.fields["retry-after-ms"] != nil)
            let failures = try await harness.auditRows(action: "auth.failed")
            #expect(failures.count == 3)
        }
    }

    @Test("strangers' refusals from a shared address never refuse a signed-in user or a valid service key there")
    func strangersDoNotLockOut() async throws {
        try await ServiceHarness.with(configure: { $0.authenticationFailureRate = RateLimit(perSecond: 0.0001, burst: 3) }) { harness in
            let user = try await harness.signIn()
            // Everyone here shares 127.0.0.1, as users behind one load balancer do.
            for _ in 0..<50 {
                await expectRPCError(.unauthenticated) { try await harness.connection.users.me(MeRequest()) }
                await expectRPCError(.unauthenticated) {
                    try await harness.connection.users.me(MeRequest(), options: .service(key: "not-a-key"))
                }
            }
            // The session cache is off in tests: each call looks the session up.
            for _ in 0..<20 {
                #expect(try await harness.connection.users.me(MeRequest(), options: .session(user.token)).id == user.id)
            }
            // A valid key used for the first time from that address.
            _ = try await harness.connection.users.getUser(options: ServiceHarness.service("reader")) { $0.userID = user.id }
        }
    }

    @Test("a flood of refused calls writes audit rows only up to the address's budget")
    func refusalFlood() async throws {
        try await ServiceHarness.with(configure: { $0.authenticationFailureRate = RateLimit(perSecond: 0.0001, burst: 3) }) { harness in
            for _ in 0..<10 {
                await expectRPCError(.unauthenticated) { try await harness.connection.users.me(MeRequest()) }
            }
            let failures = try await harness.auditRows(action: "auth.failed")
            #expect(failures.count == 3)
        }
    }
}

@Suite("Service accounts")
struct ServiceAccountTests {
    @Test("a service account's own rate replaces the class; an unlimited one is never limited")
    func ownRates() async throws {
        try await ServiceHarness.with(configure: { configuration in
            configuration.serviceRate = RateLimit(perSecond: 0.0001, burst: 2)
            var accounts = configuration.services.accounts
            accounts.append(ServiceAccount(
                name: "loadgen", keySHA256: ServiceAccount.keyHash("loadgen-key"), scopes: ["users:read"],
                rate: .limited(RateLimit(perSecond: 0.0001, burst: 20))))
            accounts.append(ServiceAccount(
                name: "unbounded", keySHA256: ServiceAccount.keyHash("unbounded-key"), scopes: ["users:read"], rate: .unlimited))
            configuration.services = try! ServiceRegistry(accounts: accounts)  // fixed test data, not input
        }) { harness in
            let user = try await harness.signIn()  // the gateway's first token
            let get: @Sendable (CallOptions) async throws -> User = { options in
                try await harness.connection.users.getUser(options: options) { $0.userID = user.id }
            }
            _ = try await get(ServiceHarness.service("reader"))
            _ = try await get(ServiceHarness.service("reader"))
            await expectRPCError(.resourceExhausted) { try await get(ServiceHarness.service("reader")) }
            for _ in 0..<20 { _ = try await get(.service(key: "loadgen-key")) }
            await expectRPCError(.resourceExhausted) { try await get(.service(key: "loadgen-key")) }
            for _ in 0..<100 { _ = try await get(.service(key: "unbounded-key")) }
        }
    }

    @Test("the accounts file: valid entries load; each mistake names the entry and what is wrong")
    func file() throws {
        let path = NSTemporaryDirectory() + "passion-services-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let hash = String(repeating: "ab", count: 32)
        try """
            {"services": [
              {"name": "gateway", "key_sha256": "\(hash)", "scopes": ["auth:signin"]},
              {"name": "game-server", "certificate_name": "game.internal", "scopes": ["progress:write", "admin"], "rate": "unlimited"},
              {"name": "loadgen", "key_sha256": "\(hash.uppercased().prefix(62))cd", "scopes": [], "rate": "20000/40000"}
            ]}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let accounts = try ServiceRegistry.load(path: path)
        #expect(accounts.map(\.name) == ["gateway", "game-server", "loadgen"])
        #expect(accounts[1].rate == .unlimited)
        #expect(accounts[2].rate == .limited(RateLimit(perSecond: 20_000, burst: 40_000)))
        let registry = try ServiceRegistry(accounts: accounts)
        #expect(try registry.account(forCertificate: PeerCertificateNames(dnsNames: ["game.internal"]), commonNameFallback: false)?.name == "game-server")

        let mistakes: [(String, String)] = [
            (#"{"services": [{"name": "Bad Name", "key_sha256": "\#(hash)", "scopes": []}]}"#, "name must be"),
            (#"{"services": [{"name": "a", "key_sha256": "xyz", "scopes": []}]}"#, "64 hex digits"),
            (#"{"services": [{"name": "a", "scopes": []}]}"#, "needs key_sha256"),
            (#"{"services": [{"name": "a", "key_sha256": "\#(hash)", "scopes": ["everything"]}]}"#, "resource:verb"),
            (#"{"services": [{"name": "a", "key_sha256": "\#(hash)", "scopes": [], "rate": "fast"}]}"#, "rate must be"),
            (#"["not", "an", "object"]"#, "not a service accounts file"),
        ]
        for (text, expected) in mistakes {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let error = #expect(throws: IdentityConfigurationError.self) { try ServiceRegistry.load(path: path) }
            #expect(error?.description.contains(expected) == true, "\(String(describing: error))")
        }
        #expect(throws: IdentityConfigurationError.self) {
            try ServiceRegistry(accounts: [ServiceAccount(name: "twice", scopes: []), ServiceAccount(name: "twice", scopes: [])])
        }
    }

    @Test("two accounts with one key hash or one certificate name are refused, naming both; the later one never wins")
    func duplicateCredentials() throws {
        let path = NSTemporaryDirectory() + "passion-services-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let hash = String(repeating: "ab", count: 32)
        let files: [(String, String)] = [
            ("""
             {"services": [{"name": "reader", "key_sha256": "\(hash)", "scopes": ["users:read"]},
                           {"name": "intruder", "key_sha256": "\(hash.uppercased())", "scopes": ["admin"]}]}
             """, "services reader and intruder have the same key_sha256"),
            ("""
             {"services": [{"name": "game", "certificate_name": "game.internal", "scopes": ["progress:write"]},
                           {"name": "root", "key_sha256": "\(hash)", "certificate_name": "game.internal", "scopes": ["admin"]}]}
             """, "services game and root have the same certificate_name \"game.internal\""),
        ]
        for (text, expected) in files {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let accounts = try ServiceRegistry.load(path: path)
            let error = #expect(throws: IdentityConfigurationError.self) { try ServiceRegistry(accounts: accounts) }
            #expect(error?.description == expected)
        }
    }
}
