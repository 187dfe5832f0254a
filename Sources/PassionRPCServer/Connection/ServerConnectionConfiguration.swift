import PassionWire
import Synchronization

/// Per-connection behaviour of the server. Defaults are documented in `Protocol/WIRE.md`.
public struct ServerConnectionConfiguration: Sendable {
    /// Limits announced in the server's HELLO.
    public var settings: ConnectionSettings
    /// Time from accept until the client's HELLO has arrived (covers TLS). Default 10 s.
    public var handshakeTimeout: Duration = .seconds(10)
    /// A connection with no calls for this long gets GOAWAY and is closed. Default 5 minutes.
    public var idleTimeout: Duration? = .seconds(300)
    /// After this long without any frame from the client the server sends a PING. Default 60 s.
    public var keepaliveInterval: Duration? = .seconds(60)
    /// A PING unanswered for this long closes the connection. Default 20 s.
    public var keepaliveTimeout: Duration = .seconds(20)
    /// PINGs a client may send in a burst before the minimum interval applies. Default 10.
    public var pingBurst: Int = 10
    /// CANCEL frames (and calls refused for exceeding the call limit) a client may send in a
    /// burst; beyond it they are allowed at `cancelRatePerSecond`. Default 500.
    public var cancelBurst: Int = 500
    /// Sustained CANCEL rate before the server answers GOAWAY(ENHANCE_YOUR_CALM). Default 250/s.
    public var cancelRatePerSecond: Int = 250
    /// How long draining calls may run after GOAWAY before the connection is closed. Default 30 s.
    public var shutdownGracePeriod: Duration = .seconds(30)
    /// After a GOAWAY for a connection error, how long the server keeps reading (and discarding)
    /// so the peer receives the GOAWAY rather than a TCP reset. Default 1 s.
    public var errorDrainTime: Duration = .seconds(1)
    /// Request bytes one connection may hold (fragments of unfinished messages, messages not yet
    /// taken by their handler); beyond it GOAWAY(ENHANCE_YOUR_CALM). Default 16 MiB.
    public var maxBufferedRequestBytes = 16 * 1024 * 1024
    /// Response bytes queued on one connection (a client that does not read) above which the server
    /// stops reading new frames from it until half of it has gone out. Default 8 MiB.
    public var maxQueuedResponseBytes = 8 * 1024 * 1024
    /// While a frame or a message is incomplete, the connection must deliver at least this many
    /// bytes per `minimumReceiveWindow`, or it is closed (GOAWAY ENHANCE_YOUR_CALM): a peer
    /// trickling a byte every few seconds would hold its buffers forever. Default 1 KiB per 10 s.
    public var minimumReceiveBytes = 1024
    public var minimumReceiveWindow: Duration = .seconds(10)
    /// A call whose handler takes longer is logged (method, status, duration, principal kind,
    /// trace id) even when it succeeds; nil logs only failures. Default 500 ms.
    public var slowCallThreshold: Duration? = .milliseconds(500)

    public init(settings: ConnectionSettings = ServerConnectionConfiguration.defaultSettings) {
        self.settings = settings
    }

    /// The protocol defaults; the HELLO's idle timeout comes from `idleTimeout`.
    public static var defaultSettings: ConnectionSettings { ConnectionSettings() }
}

/// Memory all connections of a server may hold for requests and queued responses together;
/// shared by its connections. A call that would go beyond it ends RESOURCE_EXHAUSTED.
public final class ServerMemoryBudget: Sendable {
    /// Bytes in all.
    public let limit: Int
    private let used = Atomic<Int>(0)

    public init(limit: Int) {
        self.limit = limit
    }

    /// Bytes held now.
    public var inUse: Int { used.load(ordering: .relaxed) }

    /// Takes `bytes` if they fit.
    func reserve(_ bytes: Int) -> Bool {
        guard bytes > 0 else { return true }
        var current = used.load(ordering: .relaxed)
        while true {
            guard current + bytes <= limit else { return false }
            let (exchanged, original) = used.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// Gives back bytes taken earlier.
    func release(_ bytes: Int) {
        guard bytes > 0 else { return }
        used.subtract(bytes, ordering: .relaxed)
    }
}

/// A token bucket for control frames: `capacity` at once, refilled at `ratePerSecond`.
struct TokenBucket {
    let capacity: Double
    let ratePerSecond: Double
    private var tokens: Double
    private(set) var last: MonotonicInstant

    init(capacity: Double, ratePerSecond: Double, now: MonotonicInstant = .now) {
        self.capacity = capacity
        self.ratePerSecond = ratePerSecond
        self.tokens = capacity
        self.last = now
    }

    init(capacity: Int, ratePerSecond: Double, now: MonotonicInstant = .now) {
        self.init(capacity: Double(capacity), ratePerSecond: ratePerSecond, now: now)
    }

    /// Tokens in the bucket at `now`.
    func available(now: MonotonicInstant = .now) -> Double {
        let elapsed = last.duration(to: now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return min(capacity, tokens + max(0, seconds) * ratePerSecond)
    }

    /// Takes a token; false when the bucket is empty.
    mutating func take(now: MonotonicInstant = .now) -> Bool {
        take(1, now: now) == nil
    }

    /// Takes `cost` tokens; nil when taken, otherwise the wait until they would be there (a cost
    /// above the capacity waits for a full bucket and is refused again: a misconfigured cost).
    mutating func take(_ cost: Double, now: MonotonicInstant = .now) -> Duration? {
        tokens = available(now: now)
        last = now
        guard tokens >= cost else {
            let missing = min(cost, capacity) - tokens
            return .milliseconds(Int((missing / ratePerSecond * 1000).rounded(.up)))
        }
        tokens -= cost
        return nil
    }
}
