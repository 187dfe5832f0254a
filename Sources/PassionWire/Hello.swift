import NIOCore

/// A HELLO frame: the settings one side announces, as `(id u16, value u64)` pairs.
///
/// Each side states what it accepts; the other side never sends more than that. Unknown ids are
/// ignored so that later versions can add settings.
public struct Hello: Sendable, Equatable {
    /// A setting's id on the wire.
    public struct Setting: Hashable, Sendable {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        public static let protocolVersion = Setting(rawValue: 1)
        public static let maxFrameSize = Setting(rawValue: 2)
        public static let maxMessageSize = Setting(rawValue: 3)
        public static let maxConcurrentCalls = Setting(rawValue: 4)
        public static let maxMetadataSize = Setting(rawValue: 5)
        /// Bit mask of compression algorithms the sender can inflate: bit 0 = deflate (zlib).
        public static let compression = Setting(rawValue: 6)
        /// The sender compresses only messages of at least this many bytes.
        public static let compressionThreshold = Setting(rawValue: 7)
        /// Fewest milliseconds between PINGs the sender tolerates from its peer.
        public static let minPingIntervalMillis = Setting(rawValue: 8)
        /// The sender closes a connection without calls after this many milliseconds (0: never).
        public static let idleTimeoutMillis = Setting(rawValue: 9)
        /// Version of `passion.v1.Introspection` the server implements.
        public static let introspectionVersion = Setting(rawValue: 10)
        /// MESSAGE payload bytes the sender accepts per call before it sends WINDOW.
        public static let initialWindowSize = Setting(rawValue: 11)
    }

    public private(set) var values: [Setting: UInt64] = [:]

    public init() {}

    public subscript(setting: Setting) -> UInt64? {
        get { values[setting] }
        set { values[setting] = newValue }
    }

    public func write(to buffer: inout ByteBuffer) {
        for (setting, value) in values.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            buffer.writeMultipleIntegers(setting.rawValue, value)
        }
    }

    public static func read(from buffer: inout ByteBuffer) throws -> Hello {
        guard buffer.readableBytes % 10 == 0, buffer.readableBytes <= 10 * 64 else {
            throw WireError(.malformedFrame, "HELLO payload must be up to 64 settings of 10 bytes")
        }
        var hello = Hello()
        while let (id, value) = buffer.readMultipleIntegers(as: (UInt16, UInt64).self) {
            hello.values[Setting(rawValue: id)] = value
        }
        return hello
    }
}

/// Compression algorithms in the HELLO `compression` bit mask.
public struct CompressionAlgorithms: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// zlib format (RFC 1950) with window bits 15: what `deflate` means everywhere in passion/1.
    public static let deflate = CompressionAlgorithms(rawValue: 1)
}
