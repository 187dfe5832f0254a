import PassionWire

/// Per-call settings a client chooses.
public struct CallOptions: Sendable {
    /// How long the call may take, measured from when it starts; nil means no deadline.
    public var timeout: Duration?
    /// Metadata sent with the call.
    public var metadata: Metadata
    /// Whether request messages above the negotiated threshold are compressed. Default true.
    public var compression: Bool
    /// Whether a call may wait for a connection while the server is unreachable instead of
    /// failing fast with UNAVAILABLE. Default false.
    public var waitForReady: Bool

    public init(
        timeout: Duration? = nil, metadata: Metadata = Metadata(), compression: Bool = true,
        waitForReady: Bool = false
    ) {
        self.timeout = timeout
        self.metadata = metadata
        self.compression = compression
        self.waitForReady = waitForReady
    }

    public static var defaults: CallOptions { CallOptions() }
}

extension Duration {
    /// Whole microseconds, saturating; never negative.
    package var microseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        let (product, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000)
        if overflow { return UInt64.max }
        return product &+ UInt64(attoseconds / 1_000_000_000_000)
    }
}
