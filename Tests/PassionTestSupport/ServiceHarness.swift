import CoreMetrics
import Foundation
import Logging
import PassionClient
import PassionIdentity
import PassionRPCServer
import PassionServices
import PassionStore
import Synchronization

/// The content services' clock in tests: the real time until a test sets it.
public final class TestClock: Sendable {
    private let fixed = Mutex<Date?>(nil)

    public init() {}

    public var now: Date { fixed.withLock { $0 } ?? Date() }

    /// From now on the clock reads `date`.
    public func set(_ date: Date) { fixed.withLock { $0 = date } }

    /// An instant written `2026-03-29 01:30` in `zone` (an IANA name).
    public static func date(_ text: String, in zone: String) -> Date {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: zone)
        formatter.dateFormat = "yyyy-MM-dd HH:mm"
        guard let date = formatter.date(from: text) else { preconditionFailure("not a local time: \(text) in \(zone)") }
        return date
    }

    /// Sets the clock to `text` in `zone`.
    public func set(_ text: String, in zone: String) { set(Self.date(text, in: zone)) }
}

/// A real server with the application services over a freshly migrated database, real TLS and
/// sockets, and the service accounts the tests call with.
public final class ServiceHarness: Sendable {
    public let pool: PostgresPool
    public let server: TestServer
    public let connection: ClientConnection
    public let identity: ApplicationServices
    /// The pool on the hot standby when the harness reads from one (`standbyReads`).
    public let reads: PostgresPool?

    /// Keys of the configured service accounts, by account name.
    public static let keys: [String: String] = [
        "gateway": "test-gateway-key", "reader": "test-reader-key", "progress": "test-progress-key",
        "admin": "test-admin-key", "noscope": "test-noscope-key", "everything": "test-everything-key",
    ]
    public static let scopes: [String: Set<String>] = [
        "gateway": ["auth:signin"], "reader": ["users:read"], "progress": ["progress:write"], "admin": ["admin"],
        "noscope": [],
        "everything": [
            "auth:signin", "auth:signout", "users:read", "users:write", "settings:read", "settings:write", "audit:read",
            "progress:read", "progress:write", "achievements:read", "content:read", "content:write",
        ],
    ]

    private let events: Task<Void, Never>

    private init(
        pool: PostgresPool, reads: PostgresPool?, server: TestServer, connection: ClientConnection, identity: ApplicationServices,
        events: Task<Void, Never>
    ) {
        self.pool = pool
        self.reads = reads
        self.server = server
        self.connection = connection
        self.identity = identity
        self.events = events
    }

    /// `mutualTLS` makes the server require client certificates and the harness present one.
    /// `metrics` receives the server's and the services' metrics (the shared pool's are not).
    /// `standbyReads` serves the reads that may lag from the test cluster's hot standby.
    public static func start(
        mutualTLS: Bool = false, clock: TestClock = TestClock(), metrics: any MetricsFactory = NOOPMetricsHandler.instance,
        standbyReads: Bool = false, configure: (inout IdentityConfiguration) -> Void = { _ in }
    ) async throws -> ServiceHarness {
        let (pool, name) = try await TestDatabase.migratedDatabase(size: 8)
        var reads: PostgresPool?
        if standbyReads {
            let standby = try await TestDatabase.standby()
            let standbyPool = PostgresPool(configuration: PoolConfiguration(conninfo: "host=\(standby.socketDirectory) port=5432 user=postgres dbname=\(name)"))
            try await TestDatabase.waitForStandby(primary: pool, standby: standbyPool)
            reads = standbyPool
        }
        var configuration = IdentityConfiguration()
        // Every call asks the database, so tests see each state change at once.
        configuration.sessionCacheTTL = .zero
        configuration.userRate = RateLimit(perSecond: 10_000, burst: 10_000)
        configuration.authenticationFailureRate = RateLimit(perSecond: 10_000, burst: 10_000)
        var accounts = keys.sorted { $0.key < $1.key }.map { name, key in
            ServiceAccount(name: name, keySHA256: ServiceAccount.keyHash(key), scopes: scopes[name] ?? [])
        }
        accounts.append(ServiceAccount(name: "certified", certificateName: "test-client", scopes: ["users:read"]))
        configuration.services = try ServiceRegistry(accounts: accounts)
        configure(&configuration)
        let logger = Logger.quiet("identity-tests")
        let identity = try ApplicationServices(
            pool: pool, reads: reads, configuration: configuration, metrics: metrics, logger: logger, now: { clock.now })
        let tls: ((TestCertificates) -> TLSConfiguration?)? = mutualTLS
            ? { .server(certificateChainPath: $0.serverCertificate, privateKeyPath: $0.serverKey, clientCAPath: $0.caPath) }
            : nil
        let server = try await TestServer.start(
            services: identity.services, authenticator: identity.authenticator, tls: tls, configure: { $0.metrics = metrics })
        let certificates = server.certificates
        let connection = try await ClientConnection.connect(
            mutualTLS
                ? server.clientConfiguration(certificate: certificates.clientCertificate, key: certificates.clientKey)
                : server.clientConfiguration())
        let events = Task {
            await withDiscardingTaskGroup { group in
                group.addTask { _ = try? await identity.events.run() }
                group.addTask { _ = try? await identity.leaderboards.run() }
            }
        }
        await identity.leaderboards.waitUntilReady()
        return ServiceHarness(pool: pool, reads: reads, server: server, connection: connection, identity: identity, events: events)
    }

    public static func with<T>(
        mutualTLS: Bool = false, clock: TestClock = TestClock(), metrics: any MetricsFactory = NOOPMetricsHandler.instance,
        standbyReads: Bool = false, configure: (inout IdentityConfiguration) -> Void = { _ in }, _ body: (ServiceHarness) async throws -> T
    ) async throws -> T {
        let harness = try await start(mutualTLS: mutualTLS, clock: clock, metrics: metrics, standbyReads: standbyReads, configure: configure)
        defer {
            Task {
                await harness.pool.shutdown()
                await harness.reads?.shutdown()
            }
        }
        do {
            let result = try await body(harness)
            await harness.stop()
            return result
        } catch {
            await harness.stop()
            throw error
        }
    }

    /// Returns once every score change committed so far shows in this server's leaderboards
    /// (they follow the database through notifications, asynchronously).
    public func settleLeaderboards() async throws {
        try await identity.leaderboards.settle()
    }

    public func stop() async {
        await connection.close()
        await server.stop()
        events.cancel()
        await events.value
    }

    public static func service(_ name: String, asUser: String? = nil) -> CallOptions {
        .service(key: keys[name] ?? "no such key", asUser: asUser)
    }

    /// A signed-in user.
    public struct SignedIn: Sendable {
        public var token: String
        public var id: String
        public var email: String
    }

    /// Signs a new user in through the gateway account.
    public func signIn(_ email: String = "user-\(UUID().uuidString.prefix(8))@example.com", subject: String? = nil) async throws -> SignedIn {
        let response = try await connection.auth.signIn(options: Self.service("gateway")) {
            $0.identity = VerifiedIdentity.with {
                $0.provider = .google
                $0.providerUserID = subject ?? "sub-\(email.lowercased())"
                $0.email = email
                $0.emailVerified = true
                $0.displayName = "Test User"
            }
        }
        return SignedIn(token: response.sessionToken, id: response.user.id, email: response.user.email)
    }

    /// Runs one query on the test database.
    public func query(_ sql: SQL) async throws -> Rows {
        try await pool.withConnection { try await $0.query(sql) }
    }

    public func count(_ sql: SQL) async throws -> Int {
        try await query(sql).first?.require("n", as: Int.self) ?? -1
    }

    /// A snapshot of the identity tables, to show a refused call changed nothing.
    public func snapshot() async throws -> String {
        let rows = try await query("""
            SELECT (SELECT count(*) FROM users) || '/' || (SELECT coalesce(max(updated_at)::text, '') FROM users) || '/'
                || (SELECT count(*) FROM sessions) || '/' || (SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL) || '/'
                || (SELECT coalesce(string_agg(user_id::text || theme || language || metadata::text || updated_at::text, ',' ORDER BY user_id), '')
                    FROM user_settings) AS state
            """)
        return try rows.first?.require("state", as: String.self) ?? ""
    }

    /// Audit rows of `action`, newest first.
    public func auditRows(action: String) async throws -> [Row] {
        Array(try await query("SELECT * FROM audit_logs WHERE action = \(action) ORDER BY id DESC"))
    }
}
