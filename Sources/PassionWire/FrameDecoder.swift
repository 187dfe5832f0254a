import NIOCore

/// Splits a byte stream into frames, rejecting an oversize frame from its header alone.
///
/// The decoder never buffers more than one maximum-size frame: a header declaring a larger
/// payload is an error before any of the body is read.
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = Frame

    /// The largest payload accepted; the value this side advertised in its HELLO.
    public var maxPayloadSize: Int

    public init(maxPayloadSize: Int) {
        self.maxPayloadSize = maxPayloadSize
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> Frame? {
        guard
            let (length, type, flags, callID) = buffer.getMultipleIntegers(
                at: buffer.readerIndex, as: (UInt32, UInt8, UInt8, UInt32).self)
        else { return nil }
        guard length <= maxPayloadSize else {
            throw WireError(
                .frameTooLarge,
                "frame of \(length) bytes exceeds the maximum frame size \(maxPayloadSize)")
        }
        guard buffer.readableBytes >= Frame.headerSize + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: Frame.headerSize)
        // A slice shares storage with the read buffer: no copy.
        guard let payload = buffer.readSlice(length: Int(length)) else { return nil }
        return Frame(
            type: FrameType(rawValue: type), flags: FrameFlags(rawValue: flags), callID: callID,
            payload: payload)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Frame? {
        try decode(buffer: &buffer)
    }
}

/// The 8 bytes a client sends first, before its HELLO: `PASSION` and protocol version 1.
public enum ConnectionPreface {
    public static let bytes: [UInt8] = Array("PASSION".utf8) + [0x01]
    public static var size: Int { bytes.count }

    /// Consumes the preface once all 8 bytes have arrived: true when complete, false while
    /// more bytes are needed. Bytes that already differ from the preface fail at once.
    public static func consume(_ buffer: inout ByteBuffer) throws -> Bool {
        let received = buffer.readableBytesView.prefix(size)
        guard received.elementsEqual(bytes.prefix(received.count)) else {
            throw WireError(.badPreface, "connection did not start with the passion/1 preface")
        }
        guard received.count == size else { return false }
        buffer.moveReaderIndex(forwardBy: size)
        return true
    }
}
