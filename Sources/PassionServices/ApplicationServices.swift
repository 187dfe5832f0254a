import Logging
import PassionIdentity
import PassionRPC
import PassionStore

/// Every application service over one pool (identity, gamification), with the authenticator
/// the server installs: what `passion-server` hosts besides the built-in services.
public struct ApplicationServices: Sendable {
    public let authenticator: StoreAuthenticator
    public let services: [any RPCService]

    /// Throws when an OpenID Connect provider's JWKS cannot be read.
    public init(pool: PostgresPool, configuration: IdentityConfiguration, logger: Logger) throws {
        let identity = try IdentityServices(pool: pool, configuration: configuration, logger: logger)
        let trail = AuditTrail(pool: pool, logger: logger)
        authenticator = identity.authenticator
        services = identity.services + [ProgressService(pool: pool, trail: trail)]
    }
}
