import NIOCore

/// One frame as it travels: a 10-byte header and a payload.
///
/// The payload is a slice of the connection's read buffer: decoding never copies it.
public struct Frame: Sendable, Equatable {
    /// Bytes in a frame header: length u32, type u8, flags u8, call id u32 (big-endian).
    public static let headerSize = 10

    public var type: FrameType
    public var flags: FrameFlags
    /// 0 for connection-level frames (HELLO, PING, PONG, GOAWAY); the call otherwise.
    public var callID: UInt32
    public var payload: ByteBuffer

    public init(type: FrameType, flags: FrameFlags = [], callID: UInt32 = 0, payload: ByteBuffer) {
        self.type = type
        self.flags = flags
        self.callID = callID
        self.payload = payload
    }
}

extension ByteBuffer {
    /// Appends a frame header; the caller writes exactly `payloadLength` bytes after it.
    @inlinable
    public mutating func writeFrameHeader(
        type: FrameType, flags: FrameFlags, callID: UInt32, payloadLength: Int
    ) {
        writeMultipleIntegers(UInt32(payloadLength), type.rawValue, flags.rawValue, callID)
    }

    /// Appends a whole frame.
    public mutating func writeFrame(_ frame: Frame) {
        writeFrameHeader(
            type: frame.type, flags: frame.flags, callID: frame.callID,
            payloadLength: frame.payload.readableBytes)
        writeImmutableBuffer(frame.payload)
    }
}
