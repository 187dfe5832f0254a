import CoreMetrics
import Foundation
import Logging
import PassionIdentity
import PassionRPCServer
import PassionStore
import PassionWire

/// Every application service over one pool (identity, gamification, content), with the
/// authenticator the server installs: what `passion-server` hosts besides the built-in services.
public struct ApplicationServices: Sendable {
    public let authenticator: StoreAuthenticator
    public let services: [any RPCService]
    /// Must run (in the server's service group) for Progress/Subscribe to deliver events.
    public let events: ProgressEventHub
    /// Must run (in the server's service group) for Leaderboard and GetProgress's rank.
    public let leaderboards: LeaderboardCache

    /// Throws when an OpenID Connect provider's JWKS cannot be read. `now` is the clock the
    /// content services' day arithmetic uses, `cacheClock` the one that times the session cache
    /// (tests move both). `reads`, a pool on a hot standby,
    /// serves the reads that may lag: leaderboard loads, the achievement catalog, ledger history
    /// and audit queries; everything a caller must see of their own writes stays on `pool`.
    public init(
        pool: PostgresPool, reads: PostgresPool? = nil, configuration: IdentityConfiguration, content contentConfiguration: ContentConfiguration = ContentConfiguration(),
        metrics: any MetricsFactory = NOOPMetricsHandler.instance, logger: Logger, now: @escaping @Sendable () -> Date = { Date() },
        cacheClock: @escaping @Sendable () -> MonotonicInstant = { .now }
    ) throws {
        let identity = try IdentityServices(pool: pool, reads: reads, configuration: configuration, logger: logger, cacheClock: cacheClock)
        let trail = identity.trail
        let events = try ProgressEventHub(conninfo: pool.configuration.conninfo, metrics: metrics, logger: logger)
        let leaderboards = try LeaderboardCache(pool: pool, reads: reads, metrics: metrics, logger: logger)
        let content = ContentContext(pool: pool, trail: trail, now: now, offlineDays: contentConfiguration.offlineDays)
        authenticator = identity.authenticator
        self.events = events
        self.leaderboards = leaderboards
        services = identity.services + [
            ProgressService(pool: pool, reads: reads, trail: trail, hub: events, leaderboards: leaderboards, now: now),
            AchievementsService(pool: pool, reads: reads, trail: trail, now: now),
            ProgressAdminService(pool: pool), GoalsService(content: content), HabitsService(content: content),
            QuestsService(content: content), FocusSessionsService(content: content), MaintenanceService(content: content),
        ]
    }
}
