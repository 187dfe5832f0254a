import Logging
import PassionIdentity
import PassionRPCServer
import PassionStore
import PassionWire

/// Auth, Users, Settings and Audit over one pool, with the authenticator the server installs.
public struct IdentityServices: Sendable {
    public let authenticator: StoreAuthenticator
    public let services: [any RPCService]
    /// Where failed attempts are recorded; shared with the other services.
    public let trail: AuditTrail

    /// Throws when an OpenID Connect provider's JWKS cannot be read. `reads` serves the audit
    /// queries (a hot standby may serve them: they may lag); nil reads from `pool`.
    public init(
        pool: PostgresPool, reads: PostgresPool? = nil, configuration: IdentityConfiguration, logger: Logger,
        cacheClock: @escaping @Sendable () -> MonotonicInstant = { .now }
    ) throws {
        let authenticator = StoreAuthenticator(pool: pool, configuration: configuration, logger: logger, cacheClock: cacheClock)
        let verifier = try IDTokenVerifier(configuration.identityProviders)
        let trail = AuditTrail(pool: pool, logger: logger)
        self.authenticator = authenticator
        self.trail = trail
        self.services = [
            AuthService(pool: pool, authenticator: authenticator, verifier: verifier, trail: trail),
            UsersService(pool: pool, authenticator: authenticator, trail: trail),
            SettingsService(pool: pool, trail: trail),
            AuditService(pool: reads ?? pool),
        ]
    }
}
