/// What one side of a connection accepts: the values it puts in its HELLO. Defaults are the
/// protocol's defaults (`Protocol/WIRE.md`, "Limits").
public struct ConnectionSettings: Sendable, Equatable {
    /// Largest frame payload accepted. Default 64 KiB; allowed 16 KiB–16 MiB.
    public var maxFrameSize: Int = 64 * 1024
    /// Largest message accepted, after reassembly and after inflating. Default 4 MiB.
    public var maxMessageSize: Int = 4 * 1024 * 1024
    /// Calls the peer may have open at once (server side). Default 1,024.
    public var maxConcurrentCalls: Int = 1024
    /// Largest encoded metadata block accepted. Default 16 KiB.
    public var maxMetadataSize: Int = 16 * 1024
    /// Algorithms this side can inflate. Default: deflate.
    public var compression: CompressionAlgorithms = .deflate
    /// Messages below this size are never compressed by this side. Default 1,024 bytes.
    public var compressionThreshold: Int = 1024
    /// Fewest milliseconds between PINGs tolerated from the peer. Default 1,000.
    public var minPingIntervalMillis: Int = 1000
    /// Close the connection after this long without calls; 0 disables it. Default 0 here, the
    /// server sets its own.
    public var idleTimeoutMillis: Int = 0
    /// MESSAGE payload bytes the peer may send on one call before this side grants more with
    /// WINDOW. Default 1 MiB; allowed 64 KiB–1 GiB.
    public var initialWindowSize: Int = 1024 * 1024

    public static let minimumFrameSize = 16 * 1024
    public static let maximumFrameSize = 16 * 1024 * 1024

    public init() {}

    /// The HELLO announcing these settings.
    public var hello: Hello {
        var hello = Hello()
        hello[.protocolVersion] = 1
        hello[.maxFrameSize] = UInt64(maxFrameSize)
        hello[.maxMessageSize] = UInt64(maxMessageSize)
        hello[.maxConcurrentCalls] = UInt64(maxConcurrentCalls)
        hello[.maxMetadataSize] = UInt64(maxMetadataSize)
        hello[.compression] = compression.rawValue
        hello[.compressionThreshold] = UInt64(compressionThreshold)
        hello[.minPingIntervalMillis] = UInt64(minPingIntervalMillis)
        hello[.idleTimeoutMillis] = UInt64(idleTimeoutMillis)
        hello[.introspectionVersion] = 1
        hello[.initialWindowSize] = UInt64(initialWindowSize)
        return hello
    }

    /// Reads the peer's HELLO; absent settings take the protocol defaults, out-of-range ones
    /// are a protocol error.
    public init(peer hello: Hello) throws {
        let defaults = ConnectionSettings()
        if let version = hello[.protocolVersion], version != 1 {
            throw WireError(.malformedFrame, "unsupported protocol version \(version)")
        }
        func value(_ setting: Hello.Setting, _ fallback: Int, in range: ClosedRange<Int>) throws -> Int {
            guard let raw = hello[setting] else { return fallback }
            guard raw <= UInt64(range.upperBound), range.contains(Int(raw)) else {
                throw WireError(.malformedFrame, "HELLO setting \(setting.rawValue) out of range: \(raw)")
            }
            return Int(raw)
        }
        maxFrameSize = try value(
            .maxFrameSize, defaults.maxFrameSize,
            in: Self.minimumFrameSize...Self.maximumFrameSize)
        maxMessageSize = try value(.maxMessageSize, defaults.maxMessageSize, in: 1...(1 << 30))
        maxConcurrentCalls = try value(.maxConcurrentCalls, defaults.maxConcurrentCalls, in: 1...(1 << 20))
        maxMetadataSize = try value(.maxMetadataSize, defaults.maxMetadataSize, in: 1024...(1 << 20))
        compression = CompressionAlgorithms(rawValue: hello[.compression] ?? 0)
        compressionThreshold = try value(
            .compressionThreshold, defaults.compressionThreshold, in: 0...(1 << 30))
        minPingIntervalMillis = try value(
            .minPingIntervalMillis, defaults.minPingIntervalMillis, in: 0...(1 << 30))
        idleTimeoutMillis = try value(.idleTimeoutMillis, 0, in: 0...(1 << 40))
        initialWindowSize = try value(.initialWindowSize, defaults.initialWindowSize, in: (64 * 1024)...(1 << 30))
    }
}

/// The limits in force on one connection once both HELLOs are known.
public struct NegotiatedSettings: Sendable, Equatable {
    /// What this side accepts.
    public var local: ConnectionSettings
    /// What the peer accepts: every frame and message this side sends respects it.
    public var peer: ConnectionSettings

    public init(local: ConnectionSettings, peer: ConnectionSettings) {
        self.local = local
        self.peer = peer
    }

    /// Whether messages may be compressed in the given direction: both sides must support it.
    public var deflateEnabled: Bool {
        local.compression.contains(.deflate) && peer.compression.contains(.deflate)
    }

    /// The smallest message this side compresses.
    public var compressionThreshold: Int { max(local.compressionThreshold, peer.compressionThreshold) }
}
