import NIOCore

/// The header fields of a CALL frame: `method_len u16 | method | timeout_us u64 | metadata`.
public struct CallHead: Sendable, Equatable {
    /// `package.Service/Method`, for example `passion.v1.Diagnostics/Echo`.
    public var method: String
    /// Remaining time the caller grants the call, in microseconds; 0 means no deadline.
    public var timeoutMicroseconds: UInt64
    public var metadata: Metadata

    public init(method: String, timeoutMicroseconds: UInt64 = 0, metadata: Metadata = Metadata()) {
        self.method = method
        self.timeoutMicroseconds = timeoutMicroseconds
        self.metadata = metadata
    }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt16(truncatingIfNeeded: method.utf8.count))
        buffer.writeString(method)
        buffer.writeInteger(timeoutMicroseconds)
        buffer.writeMetadata(metadata)
    }

    /// Reads the header fields, leaving the optional inline message in `buffer`.
    public static func read(from buffer: inout ByteBuffer, metadataLimit: Int) throws -> CallHead {
        guard let methodLength = buffer.readInteger(as: UInt16.self),
            let method = buffer.readString(length: Int(methodLength)),
            let timeout = buffer.readInteger(as: UInt64.self)
        else { throw WireError(.malformedFrame, "truncated CALL header") }
        let metadata = try buffer.readMetadata(limit: metadataLimit)
        return CallHead(method: method, timeoutMicroseconds: timeout, metadata: metadata)
    }
}

/// The header fields of a TRAILERS frame: the call's final status.
///
/// `status u8 | message_len u16 | message | details | metadata`, where details are
/// `reason_len u8 | reason | fields` and fields use the metadata encoding.
public struct TrailersHead: Sendable, Equatable {
    /// A gRPC canonical status code, 0–16.
    public var status: UInt8
    public var message: String
    /// A machine-readable reason such as `INSUFFICIENT_FUNDS`; empty when there are no details.
    public var reason: String
    /// Key/values explaining the reason, for example `balance: 40`.
    public var fields: Metadata
    public var metadata: Metadata

    public init(
        status: UInt8, message: String = "", reason: String = "", fields: Metadata = Metadata(),
        metadata: Metadata = Metadata()
    ) {
        self.status = status
        self.message = message
        self.reason = reason
        self.fields = fields
        self.metadata = metadata
    }

    /// The longest status message sent; longer messages are cut at a character boundary.
    public static let maxMessageBytes = 4096

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(status)
        let messageBytes = Self.truncated(message, to: Self.maxMessageBytes)
        buffer.writeInteger(UInt16(messageBytes.count))
        buffer.writeBytes(messageBytes)
        let reasonBytes = Self.truncated(reason, to: 255)
        buffer.writeInteger(UInt8(reasonBytes.count))
        buffer.writeBytes(reasonBytes)
        buffer.writeMetadata(fields)
        buffer.writeMetadata(metadata)
    }

    public static func read(from buffer: inout ByteBuffer, metadataLimit: Int) throws -> TrailersHead {
        guard let status = buffer.readInteger(as: UInt8.self),
            let messageLength = buffer.readInteger(as: UInt16.self),
            let messageBytes = buffer.readBytes(length: Int(messageLength)),
            let reasonLength = buffer.readInteger(as: UInt8.self),
            let reason = buffer.readString(length: Int(reasonLength))
        else { throw WireError(.malformedFrame, "truncated TRAILERS header") }
        let fields = try buffer.readMetadata(limit: metadataLimit)
        let metadata = try buffer.readMetadata(limit: metadataLimit)
        // A status message is for people: invalid UTF-8 is repaired, never fatal.
        let message = String(decoding: messageBytes, as: UTF8.self)
        return TrailersHead(
            status: status, message: message, reason: reason, fields: fields, metadata: metadata)
    }

    private static func truncated(_ text: String, to limit: Int) -> [UInt8] {
        var bytes = Array(text.utf8)
        guard bytes.count > limit else { return bytes }
        bytes.removeSubrange(limit...)
        // Drop a partial UTF-8 sequence at the cut.
        while let last = bytes.last, last & 0xC0 == 0x80 { bytes.removeLast() }
        if let last = bytes.last, last & 0x80 != 0 { bytes.removeLast() }
        return bytes
    }
}

/// Why a call ended without a status from its handler (CANCEL frame: `reason u8 | text`).
public struct CancelReason: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The client no longer wants the result.
    public static let cancelled = CancelReason(rawValue: 1)
    /// The client's deadline passed.
    public static let deadlineExceeded = CancelReason(rawValue: 2)
    /// The server did not process the call at all; retrying it is always safe.
    public static let refused = CancelReason(rawValue: 3)

    public var description: String {
        switch self {
        case .cancelled: "CANCELLED"
        case .deadlineExceeded: "DEADLINE_EXCEEDED"
        case .refused: "REFUSED"
        default: "UNKNOWN(\(rawValue))"
        }
    }
}

/// The code in a GOAWAY frame: why the sender stops accepting calls.
public struct GoAwayCode: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Graceful: shutdown, idle timeout, maximum age.
    public static let noError = GoAwayCode(rawValue: 0)
    public static let protocolError = GoAwayCode(rawValue: 1)
    public static let internalError = GoAwayCode(rawValue: 2)
    /// The peer sent control frames too fast (ping or cancel floods).
    public static let enhanceYourCalm = GoAwayCode(rawValue: 3)
    public static let frameSizeError = GoAwayCode(rawValue: 4)

    public var description: String {
        switch self {
        case .noError: "NO_ERROR"
        case .protocolError: "PROTOCOL_ERROR"
        case .internalError: "INTERNAL_ERROR"
        case .enhanceYourCalm: "ENHANCE_YOUR_CALM"
        case .frameSizeError: "FRAME_SIZE_ERROR"
        default: "UNKNOWN(\(rawValue))"
        }
    }
}

/// A GOAWAY frame's payload: `last_call_id u32 | code u8 | debug text`.
public struct GoAway: Sendable, Equatable {
    /// Calls up to and including this id will be finished; later ones were refused.
    public var lastCallID: UInt32
    public var code: GoAwayCode
    public var debugMessage: String

    public init(lastCallID: UInt32, code: GoAwayCode, debugMessage: String = "") {
        self.lastCallID = lastCallID
        self.code = code
        self.debugMessage = debugMessage
    }

    public func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(lastCallID)
        buffer.writeInteger(code.rawValue)
        buffer.writeString(debugMessage)
    }

    public static func read(from buffer: inout ByteBuffer) throws -> GoAway {
        guard let last = buffer.readInteger(as: UInt32.self), let code = buffer.readInteger(as: UInt8.self)
        else { throw WireError(.malformedFrame, "truncated GOAWAY") }
        let debug = buffer.readString(length: buffer.readableBytes) ?? ""
        return GoAway(lastCallID: last, code: GoAwayCode(rawValue: code), debugMessage: debug)
    }
}
