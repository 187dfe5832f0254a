/// The kind of a frame: the byte at offset 4 of every frame header (see `Protocol/WIRE.md`).
public struct FrameType: Hashable, Sendable, CustomStringConvertible {
    /// The byte on the wire.
    public let rawValue: UInt8

    /// Creates a frame type from its wire byte; unknown values are representable on purpose.
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let hello = FrameType(rawValue: 0x01)
    public static let call = FrameType(rawValue: 0x02)
    public static let message = FrameType(rawValue: 0x03)
    public static let halfClose = FrameType(rawValue: 0x04)
    public static let headers = FrameType(rawValue: 0x05)
    public static let trailers = FrameType(rawValue: 0x06)
    public static let cancel = FrameType(rawValue: 0x07)
    public static let ping = FrameType(rawValue: 0x08)
    public static let pong = FrameType(rawValue: 0x09)
    public static let goAway = FrameType(rawValue: 0x0A)
    /// Grants the peer more bytes of MESSAGE payload for one call.
    public static let window = FrameType(rawValue: 0x0B)

    /// Whether this implementation knows the type.
    public var isKnown: Bool { (0x01...0x0B).contains(rawValue) }

    public var description: String {
        switch self {
        case .hello: "HELLO"
        case .call: "CALL"
        case .message: "MESSAGE"
        case .halfClose: "HALF_CLOSE"
        case .headers: "HEADERS"
        case .trailers: "TRAILERS"
        case .cancel: "CANCEL"
        case .ping: "PING"
        case .pong: "PONG"
        case .goAway: "GOAWAY"
        case .window: "WINDOW"
        default: "UNKNOWN(0x\(String(rawValue, radix: 16)))"
        }
    }
}

/// The flag byte at offset 5 of every frame header.
public struct FrameFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The sender sends no more messages on this call (client half-close).
    public static let endStream = FrameFlags(rawValue: 0x01)
    /// A CALL or TRAILERS frame carries a message after its header fields.
    public static let hasMessage = FrameFlags(rawValue: 0x02)
    /// The message (set on its first fragment) is zlib-compressed.
    public static let compressed = FrameFlags(rawValue: 0x04)
    /// The message continues in the next MESSAGE frame of the same call.
    public static let more = FrameFlags(rawValue: 0x08)
    /// A receiver that does not know the frame's type drops it instead of failing the connection.
    public static let ignorable = FrameFlags(rawValue: 0x80)
}
