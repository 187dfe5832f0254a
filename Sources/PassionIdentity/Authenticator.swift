import Foundation
import Logging
import PassionRPCServer
import PassionWire
import PassionStore
import PassionTLS
import Synchronization

/// How the server authenticates, limits and remembers sessions.
public struct IdentityConfiguration: Sendable {
    /// How long a session lasts. Default 7 days.
    public var sessionLifetime: Duration = .seconds(7 * 86_400)
    /// How long a verified session is trusted without asking the database again. Revocation on
    /// this instance is immediate; on other instances it takes at most this long. Default 2 s.
    public var sessionCacheTTL: Duration = .seconds(2)
    public var services: ServiceRegistry = .empty
    /// Users and anonymous callers (by address). Default 50/s, burst 100.
    public var userRate = RateLimit(perSecond: 50, burst: 100)
    /// Each service. Default 5,000/s, burst 10,000.
    public var serviceRate = RateLimit(perSecond: 5_000, burst: 10_000)
    /// Refused calls per client address. Beyond it, credentials from that address are refused
    /// before any lookup and refusals are no longer written to the audit log, so a flood of bad
    /// calls cannot become database load. Generous, because many users can share an address (a
    /// proxy, a NAT) and expired tokens are routine. Default 20/s, burst 100.
    public var authenticationFailureRate = RateLimit(perSecond: 20, burst: 100)
    /// OpenID Connect providers whose ID tokens SignIn accepts.
    public var identityProviders: [IdentityProviderConfiguration] = []
    /// Whether a client certificate without a subjectAltName extension may be matched by its
    /// common name. Off by default: TLS itself stopped trusting CN (RFC 6125), and a CA that signs
    /// certificates for other purposes may put any CN beside its SANs.
    public var certificateCommonNameFallback = false

    public init() {}
}

/// The server's authenticator: bearer session tokens (users), service keys and mTLS client
/// certificates (services, optionally acting for a user), rate limits per principal, and an
/// audit row for every refused call.
public final class StoreAuthenticator: Authenticator {
    public let configuration: IdentityConfiguration
    let pool: PostgresPool
    let limiter: PrincipalRateLimiter
    /// Failed session lookups per address: spent only by tokens the database did not know, so
    /// that strangers' refusals never cost a real user their lookups.
    private let failures: PrincipalRateLimiter
    /// Refusal rows written per address: a flood of refused calls must not become database load.
    private let auditedRefusals: PrincipalRateLimiter
    let sessions: SessionCache
    let trail: AuditTrail
    /// Authorization headers (`ServiceKey <key>`) whose key matched, and the principal each names.
    private let verifiedServiceKeys = Mutex([String: Principal]())
    /// Users a service recently acted for that were live then; kept as long as sessions are.
    private let liveUsers: ExpiringSet
    /// Users deleted on this instance lately: never cached as live by a lookup that raced it.
    private let deletedUsers: ExpiringSet
    private let cacheMetrics: AuthCacheMetrics
    private let logger: Logger

    /// `cacheClock` times the session and live-user caches (tests move it).
    public init(
        pool: PostgresPool, configuration: IdentityConfiguration, logger: Logger,
        cacheClock: @escaping @Sendable () -> MonotonicInstant = { .now }
    ) {
        self.pool = pool
        self.configuration = configuration
        self.limiter = PrincipalRateLimiter(users: configuration.userRate, services: configuration.serviceRate)
        self.failures = PrincipalRateLimiter(users: configuration.authenticationFailureRate, services: configuration.authenticationFailureRate)
        self.auditedRefusals = PrincipalRateLimiter(
            users: configuration.authenticationFailureRate, services: configuration.authenticationFailureRate)
        self.sessions = SessionCache(ttl: configuration.sessionCacheTTL, now: cacheClock)
        self.liveUsers = ExpiringSet(ttl: configuration.sessionCacheTTL, now: cacheClock)
        self.deletedUsers = ExpiringSet(ttl: max(configuration.sessionCacheTTL, .seconds(60)), now: cacheClock)
        self.trail = AuditTrail(pool: pool, logger: logger)
        self.logger = logger
        self.cacheMetrics = AuthCacheMetrics(factory: pool.configuration.metrics)
    }

    public func authenticate(_ credentials: CallCredentials) async throws -> Principal {
        // Synchronous unless a session must be read: every async level a call passes through
        // costs it a frame in its task's allocator and an executor check on each resumption.
        var principal: Principal
        switch try identify(credentials) {
        case .known(let known): principal = known
        case .sessionToLoad(let hash): principal = try await loadPrincipal(sessionHash: hash, peerHost: credentials.peerHost)
        }
        if let asUser = credentials.metadata["as-user"] {
            guard asUser.utf8.count == 36, let id = (try? UUID(postgresText: asUser)) else {
                throw IdentifiedRefusal(
                    principal: principal,
                    error: RPCError(
                        code: .invalidArgument, message: "as-user must be a user id (UUID)",
                        details: ErrorDetails(reason: "AS_USER_MALFORMED", fields: ["field": "as-user"])))
            }
            // The id's canonical text; the header's own when it already is (no new string).
            principal.actingForUser = asUser.utf8.contains(where: { (0x41...0x5A).contains($0) }) ? id.postgresText : asUser
        }
        return principal
    }

    /// Who the credentials name, as far as memory tells: a session token missing from the cache
    /// is left to `loadPrincipal`.
    private enum Identified {
        case known(Principal)
        case sessionToLoad([UInt8])
    }

    private func identify(_ credentials: CallCredentials) throws -> Identified {
        guard let authorization = credentials.metadata["authorization"] else {
            if let certificate = credentials.peerCertificate,
                let account = try configuration.services.account(
                    forCertificate: certificate, commonNameFallback: configuration.certificateCommonNameFallback)
            {
                return .known(Principal(kind: .service, id: account.name, scopes: account.scopes))
            }
            return .known(.anonymous)
        }
        return try verify(authorization: authorization)
    }

    /// Refuses a client that keeps presenting bad credentials before it costs a hash or a query.
    private func checkFailureBudget(_ peerHost: String) throws {
        guard failures.available(key: peerHost, limit: configuration.authenticationFailureRate) >= 1 else {
            throw Self.tooManyFailures
        }
    }

    /// The principal of a configured key. Headers whose key matched are remembered whole, so a
    /// busy service pays neither a SHA-256 nor the header's parsing per call; unknown keys are
    /// never remembered (no memory for attackers to fill). No failure budget applies: the check
    /// is a hash in memory, and a budget shared by an address would let a stranger there lock
    /// the service out.
    private func servicePrincipal(key: Substring, header: String) -> Principal? {
        guard let account = configuration.services.account(forKey: String(key)), account.keySHA256 != nil else { return nil }
        let principal = Principal(kind: .service, id: account.name, scopes: account.scopes)
        verifiedServiceKeys.withLock { headers in
            if headers.count < configuration.services.accounts.count * 2 + 8 { headers[header] = principal }
        }
        return principal
    }

    static let tooManyFailures = RPCError(
        code: .resourceExhausted, message: "too many failed authentications from this address; retry later",
        details: ErrorDetails(reason: "RATE_LIMITED", fields: ["retry-after-ms": "1000"]))

    private func verify(authorization: String) throws -> Identified {
        if let known = verifiedServiceKeys.withLock({ $0[authorization] }) { return .known(known) }
        // Parsed by hand over UTF-8 bytes: this runs on every call, and Foundation's trimming,
        // or even walking Characters, costs more than the rest of the check.
        let malformed = Self.malformedAuthorization
        let bytes = authorization.utf8
        let space = UInt8(ascii: " ")
        guard let schemeEnd = bytes.firstIndex(of: space) else { throw malformed }
        let scheme = authorization[..<schemeEnd]
        var start = bytes.index(after: schemeEnd)
        var end = bytes.endIndex
        while start < end, bytes[start] == space { start = bytes.index(after: start) }
        while start < end, bytes[bytes.index(before: end)] == space { end = bytes.index(before: end) }
        let credential = authorization[start..<end]
        if scheme == "ServiceKey" || scheme.lowercased() == "servicekey" {
            guard let principal = servicePrincipal(key: credential, header: authorization) else {
                throw Self.unauthenticated("unknown service key", reason: "SERVICE_KEY_UNKNOWN")
            }
            return .known(principal)
        }
        guard scheme == "Bearer" || scheme.lowercased() == "bearer" else { throw malformed }
        guard let hash = SessionToken.hash(String(credential)) else {
            throw Self.unauthenticated("the session token is malformed", reason: "TOKEN_MALFORMED")
        }
        let cached = sessions.lookup(hash)
        cacheMetrics.session(hit: cached != nil)
        guard let cached else { return .sessionToLoad(hash) }
        return .known(Principal(kind: .user, id: cached.userID, sessionID: Crypto.hex(hash)))
    }

    /// The principal of a session token the cache does not hold, from the database; failures
    /// count against the address's budget.
    private func loadPrincipal(sessionHash hash: [UInt8], peerHost host: String) async throws -> Principal {
        try checkFailureBudget(host)
        let session: SessionCache.Entry
        do {
            session = try await loadSession(hash: hash)
        } catch let error as RPCError where error.code == .unauthenticated {
            _ = failures.take(1, key: host, limit: configuration.authenticationFailureRate)
            throw error
        }
        return Principal(kind: .user, id: session.userID, sessionID: Crypto.hex(hash))
    }

    /// Made once: built in `verify` it cost every call its strings, refused or not.
    static let malformedAuthorization = unauthenticated(
        "authorization must be \"Bearer <session token>\" or \"ServiceKey <key>\"", reason: "AUTHORIZATION_MALFORMED")

    static func unauthenticated(_ message: String, reason: String) -> RPCError {
        RPCError(code: .unauthenticated, message: message, details: ErrorDetails(reason: reason))
    }

    /// The live session of a token hash from the database, which also moves `last_activity`
    /// forward at most once a minute; cached for the next calls.
    private func loadSession(hash: [UInt8]) async throws -> SessionCache.Entry {
        // A read that takes no locks, on the loop's shared connection with the calls' own reads:
        // a client that calls less often than the cache keeps a session misses it on most calls.
        let row = try await pool.read("""
            SELECT user_id, expires_at, revoked_at IS NOT NULL AS revoked, expires_at <= now() AS expired,
                   last_activity < now() - interval '1 minute' AS idle
            FROM sessions WHERE id = \(Bytes(hash))
            """).first
        guard let row else { throw Self.unauthenticated("unknown or signed-out session", reason: "TOKEN_UNKNOWN") }
        if try row.require("revoked", as: Bool.self) {
            throw Self.unauthenticated("the session was signed out", reason: "TOKEN_REVOKED")
        }
        if try row.require("expired", as: Bool.self) {
            throw Self.unauthenticated("the session expired; sign in again", reason: "SESSION_EXPIRED")
        }
        let entry = SessionCache.Entry(
            hash: hash, userID: try row.require("user_id", as: UUID.self).postgresText,
            expiresAt: try row.require("expires_at", as: Date.self))
        if try row.require("idle", as: Bool.self) {
            // The write, at most once a minute per session, on a connection of its own. The
            // session was live when read, so the call goes on whatever becomes of the write; it
            // is cached only when the write found the session still live (a sign-out may have
            // committed in between).
            do {
                let touched = try await pool.statement { connection in
                    try await connection.query("""
                        UPDATE sessions SET last_activity = now()
                        WHERE id = \(Bytes(hash)) AND revoked_at IS NULL AND expires_at > now()
                          AND last_activity < now() - interval '1 minute'
                        RETURNING 1 AS touched
                        """)
                }
                if !touched.isEmpty { sessions.store(entry) }
            } catch {
                logger.warning("could not record a session's activity", metadata: ["error": "\(error)"])
            }
            return entry
        }
        sessions.store(entry)
        return entry
    }

    public func admit(_ principal: Principal, credentials: CallCredentials) async throws {
        var limit: RateLimit?
        var unlimited = false
        if principal.kind == .service {
            switch configuration.services.account(named: principal.id)?.rate {
            case .unlimited: unlimited = true
            case .limited(let own): limit = own
            case nil: break
            }
        }
        if !unlimited {
            try limiter.admit(principal, method: credentials.method, peerHost: credentials.peerHost, limit: limit)
        }
        if let user = principal.actingForUser {
            let cached = liveUsers.contains(user)
            cacheMetrics.liveUser(hit: cached)
            if !cached { try await requireLiveUser(user) }
        }
    }

    static let userNotFound = RPCError(code: .notFound, message: "user not found", details: ErrorDetails(reason: "USER_NOT_FOUND"))

    /// The one check every call a service makes for a user passes: the user named in `as-user`
    /// exists and is not deleted, so no handler can write for a deleted (or made-up) user and
    /// every method answers such a call alike. A user signing in as themselves needs no check:
    /// deleting an account deletes its sessions. `admit` asks the short cache first; this reads
    /// the database for a user it does not hold.
    private func requireLiveUser(_ user: String) async throws {
        guard let id = (try? UUID(postgresText: user)) else { throw Self.userNotFound }
        // A read that takes no locks: it rides the loop's shared connection with the calls'
        // own reads instead of taking a pool connection, which a service acting for many users
        // (each missing the short cache) would do on most calls.
        let live = try await pool.read("SELECT true AS live FROM users WHERE id = \(id) AND deleted_at IS NULL").first?
            .require("live", as: Bool.self) == true
        guard live else { throw Self.userNotFound }
        // A deletion on this instance while the query ran must not be cached over.
        if !deletedUsers.contains(user) { liveUsers.insert(user) }
    }

    /// Refused calls leave a failure row, except rate-limit refusals and refusals beyond the
    /// address's audit budget: writing one per refused call would turn a flood into database
    /// load. That budget is the audit's alone; it never refuses a call.
    public func refused(_ credentials: CallCredentials, principal: Principal?, error: RPCError) async {
        guard error.code != .resourceExhausted else { return }
        guard auditedRefusals.take(1, key: credentials.peerHost, limit: configuration.authenticationFailureRate) == nil else { return }
        let origin = AuditOrigin(principal: principal ?? .anonymous, peer: credentials.peer, metadata: credentials.metadata)
        var details = ["method": credentials.method.fullName, "code": error.code.name]
        if let reason = error.details?.reason { details["reason"] = reason }
        await trail.recordFailure(origin.record(
            error.code == .unauthenticated ? "auth.failed" : "auth.denied", resourceType: "method",
            resourceID: credentials.method.fullName, status: .failure, details: details))
    }

    /// Forgets a revoked session on this instance at once.
    public func forget(sessionHash: [UInt8]) { sessions.remove(sessionHash) }

    /// Forgets every cached session of a user and that the user is live (sign out everywhere,
    /// account deleted).
    public func forget(userID: String) {
        sessions.remove(userID: userID)
        liveUsers.remove(userID)
    }

    /// The account was deleted: forgets it as `forget(userID:)` does, and keeps a lookup that
    /// raced the deletion from caching it as live again.
    public func forgetDeleted(userID: String) {
        deletedUsers.insert(userID)
        forget(userID: userID)
    }
}

/// Keys remembered for a short time, at most 100,000 of them.
final class ExpiringSet: Sendable {
    private let ttl: Duration
    private let now: @Sendable () -> MonotonicInstant
    private let entries = Mutex([String: MonotonicInstant]())
    private let capacity = 100_000

    init(ttl: Duration, now: @escaping @Sendable () -> MonotonicInstant) {
        self.ttl = ttl
        self.now = now
    }

    func contains(_ key: String) -> Bool {
        let now = now()
        return entries.withLock { entries in
            guard let until = entries[key] else { return false }
            if until > now { return true }
            entries[key] = nil
            return false
        }
    }

    func insert(_ key: String) {
        guard ttl > .zero else { return }
        let now = now()
        entries.withLock { entries in
            if entries.count >= capacity {
                entries = entries.filter { $0.value > now }
                if entries.count >= capacity { entries.removeAll() }
            }
            entries[key] = now + ttl
        }
    }

    func remove(_ key: String) { _ = entries.withLock { $0.removeValue(forKey: key) } }
}

/// Verified sessions for a short time, so most calls need no database round trip to
/// authenticate.
final class SessionCache: Sendable {
    struct Entry: Sendable {
        var hash: [UInt8]
        var userID: String
        var expiresAt: Date
        /// Set by `store`: until then, never trusted.
        var cachedUntil: MonotonicInstant?
    }

    private let ttl: Duration
    private let now: @Sendable () -> MonotonicInstant
    private let entries = Mutex([[UInt8]: Entry]())
    private let capacity = 100_000

    init(ttl: Duration, now: @escaping @Sendable () -> MonotonicInstant) {
        self.ttl = ttl
        self.now = now
    }

    func lookup(_ hash: [UInt8]) -> Entry? {
        let now = now()
        return entries.withLock { entries in
            guard let entry = entries[hash] else { return nil }
            guard let until = entry.cachedUntil, until > now, entry.expiresAt > Date() else {
                entries[hash] = nil
                return nil
            }
            return entry
        }
    }

    func store(_ entry: Entry) {
        guard ttl > .zero else { return }
        var entry = entry
        let now = now()
        entry.cachedUntil = now + ttl
        entries.withLock { entries in
            if entries.count >= capacity {
                entries = entries.filter { ($0.value.cachedUntil ?? now) > now }
                if entries.count >= capacity { entries.removeAll() }
            }
            entries[entry.hash] = entry
        }
    }

    func remove(_ hash: [UInt8]) {
        _ = entries.withLock { $0.removeValue(forKey: hash) }
    }

    func remove(userID: String) {
        entries.withLock { entries in entries = entries.filter { $0.value.userID != userID } }
    }
}
