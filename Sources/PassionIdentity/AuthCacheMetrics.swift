import CoreMetrics

/// How often the session and live-user caches spared the database a read
/// (`passion_auth_cache_lookups_total{cache, result}`): a falling share of hits at load means the
/// callers are spread over more users or sessions than 2 s of calls revisit, and every miss is a
/// read before the call's own.
struct AuthCacheMetrics: Sendable {
    private let sessionHit: Counter
    private let sessionMiss: Counter
    private let liveUserHit: Counter
    private let liveUserMiss: Counter

    init(factory: any MetricsFactory) {
        func counter(_ cache: String, _ result: String) -> Counter {
            Counter(label: "passion_auth_cache_lookups_total", dimensions: [("cache", cache), ("result", result)], factory: factory)
        }
        sessionHit = counter("session", "hit")
        sessionMiss = counter("session", "miss")
        liveUserHit = counter("live_user", "hit")
        liveUserMiss = counter("live_user", "miss")
    }

    func session(hit: Bool) {
        (hit ? sessionHit : sessionMiss).increment()
    }

    func liveUser(hit: Bool) {
        (hit ? liveUserHit : liveUserMiss).increment()
    }
}
