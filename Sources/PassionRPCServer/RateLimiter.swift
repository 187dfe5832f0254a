import PassionWire
import Synchronization

/// Tokens per second and bucket size for one class of callers.
public struct RateLimit: Sendable, Hashable, CustomStringConvertible {
    public var perSecond: Double
    public var burst: Double

    public init(perSecond: Double, burst: Double) {
        self.perSecond = perSecond
        self.burst = burst
    }

    /// `RATE` or `RATE/BURST`, for example `50/100` (burst defaults to twice the rate).
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let rate = Double(parts[0]), rate > 0, rate.isFinite else { return nil }
        let burst = parts.count == 2 ? Double(parts[1]) : rate * 2
        guard let burst, burst >= 1, burst.isFinite else { return nil }
        self.init(perSecond: rate, burst: burst)
    }

    public var description: String { "\(perSecond)/s, burst \(burst)" }
}

/// Token buckets per principal: users (and anonymous callers, by address) share one class,
/// services have their own, larger one. A call takes its method's cost in tokens; an empty
/// bucket answers RESOURCE_EXHAUSTED with the wait before the call would fit.
public final class PrincipalRateLimiter: Sendable {
    public let users: RateLimit
    public let services: RateLimit
    /// Buckets kept at most; beyond it, full (idle) buckets are dropped first.
    private let capacity: Int
    private let buckets = Mutex([String: TokenBucket]())

    public init(users: RateLimit, services: RateLimit, capacity: Int = 100_000) {
        self.users = users
        self.services = services
        self.capacity = capacity
    }

    /// Takes `cost` tokens from `key`'s bucket of `limit`; nil when admitted, otherwise the
    /// time until enough tokens are back.
    public func take(_ cost: Int, key: String, limit: RateLimit, now: ContinuousClock.Instant = .now) -> Duration? {
        buckets.withLock { buckets in
            if buckets[key] == nil, buckets.count >= capacity {
                // Buckets that refilled belong to callers that went quiet: forgetting them loses nothing.
                let refillTime = Duration.milliseconds(Int(max(users.burst / users.perSecond, services.burst / services.perSecond) * 1000) + 1)
                let instant = MonotonicInstant(now)
                buckets = buckets.filter { $0.value.last.duration(to: instant) < refillTime }
                if buckets.count >= capacity { buckets.removeAll() }
            }
            let instant = MonotonicInstant(now)
            var bucket = buckets[key] ?? TokenBucket(capacity: limit.burst, ratePerSecond: limit.perSecond, now: instant)
            defer { buckets[key] = bucket }
            return bucket.take(Double(cost), now: instant)
        }
    }

    /// Tokens in `key`'s bucket now, without taking any.
    public func available(key: String, limit: RateLimit, now: ContinuousClock.Instant = .now) -> Double {
        buckets.withLock { $0[key]?.available(now: MonotonicInstant(now)) ?? limit.burst }
    }

    /// Admits a call of `method` by `principal` (anonymous callers are keyed by `peerHost`), or
    /// throws RESOURCE_EXHAUSTED with a `retry-after-ms` detail. `limit` replaces the principal's
    /// class (a service account with a rate of its own).
    public func admit(_ principal: Principal, method: MethodDescriptor, peerHost: String, limit: RateLimit? = nil) throws {
        let (key, classLimit): (String, RateLimit) =
            switch principal.kind {
            case .service: ("service:\(principal.id)", services)
            case .user: ("user:\(principal.id)", users)
            case .anonymous: ("peer:\(peerHost)", users)
            }
        let limit = limit ?? classLimit
        if let wait = take(method.cost, key: key, limit: limit) {
            let milliseconds = max(1, wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000)
            throw RPCError(
                code: .resourceExhausted, message: "rate limit exceeded for \(principal.kind.rawValue) callers; retry later",
                details: ErrorDetails(reason: "RATE_LIMITED", fields: ["retry-after-ms": "\(milliseconds)"]))
        }
    }
}
