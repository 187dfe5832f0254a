import NIOCore

/// Encodes outbound frames for one connection into a caller-owned buffer, fragmenting messages
/// to the peer's maximum frame size and compressing them when that pays.
///
/// The buffer is the connection's pending output: everything written between two flushes goes
/// to the socket in one write.
public struct FrameWriter {
    public var settings: NegotiatedSettings
    private let deflater: Deflater

    public init(settings: NegotiatedSettings) {
        self.settings = settings
        self.deflater = Deflater()
    }

    /// Writes a CALL; a message that does not fit in the same frame follows in MESSAGE frames.
    public func writeCall(
        callID: UInt32, head: CallHead, message: ByteBuffer?, endStream: Bool, compress: Bool,
        into buffer: inout ByteBuffer
    ) {
        let prepared = message.map { prepare($0, compress: compress) }
        let headStart = beginFrame(into: &buffer)
        head.write(to: &buffer)
        var flags: FrameFlags = []
        if let prepared, fitsInline(prepared.bytes, headStart: headStart, buffer: buffer) {
            buffer.writeImmutableBuffer(prepared.bytes)
            flags.insert(.hasMessage)
            if prepared.compressed { flags.insert(.compressed) }
            if endStream { flags.insert(.endStream) }
            endFrame(at: headStart, type: .call, flags: flags, callID: callID, into: &buffer)
            return
        }
        if prepared == nil, endStream { flags.insert(.endStream) }
        endFrame(at: headStart, type: .call, flags: flags, callID: callID, into: &buffer)
        if let prepared {
            writeFragments(callID: callID, prepared, endStream: endStream, into: &buffer)
        }
    }

    /// Writes one message as MESSAGE frames.
    public func writeMessage(
        callID: UInt32, message: ByteBuffer, endStream: Bool, compress: Bool,
        into buffer: inout ByteBuffer
    ) {
        writeFragments(callID: callID, prepare(message, compress: compress), endStream: endStream, into: &buffer)
    }

    /// Writes the final status; a response message is inlined when it fits.
    public func writeTrailers(
        callID: UInt32, head: TrailersHead, message: ByteBuffer?, compress: Bool,
        into buffer: inout ByteBuffer
    ) {
        let prepared = message.map { prepare($0, compress: compress) }
        let headStart = beginFrame(into: &buffer)
        head.write(to: &buffer)
        if let prepared {
            if fitsInline(prepared.bytes, headStart: headStart, buffer: buffer) {
                buffer.writeImmutableBuffer(prepared.bytes)
                var flags: FrameFlags = [.hasMessage]
                if prepared.compressed { flags.insert(.compressed) }
                endFrame(at: headStart, type: .trailers, flags: flags, callID: callID, into: &buffer)
                return
            }
            // Too big to inline: send the message first, then the trailers on their own.
            buffer.moveWriterIndex(to: headStart)
            writeFragments(callID: callID, prepared, endStream: false, into: &buffer)
            let trailersStart = beginFrame(into: &buffer)
            head.write(to: &buffer)
            endFrame(at: trailersStart, type: .trailers, flags: [], callID: callID, into: &buffer)
            return
        }
        endFrame(at: headStart, type: .trailers, flags: [], callID: callID, into: &buffer)
    }

    public func writeHeaders(callID: UInt32, metadata: Metadata, into buffer: inout ByteBuffer) {
        let start = beginFrame(into: &buffer)
        buffer.writeMetadata(metadata)
        endFrame(at: start, type: .headers, flags: [], callID: callID, into: &buffer)
    }

    public func writeHalfClose(callID: UInt32, into buffer: inout ByteBuffer) {
        buffer.writeFrameHeader(type: .halfClose, flags: [.endStream], callID: callID, payloadLength: 0)
    }

    public func writeCancel(callID: UInt32, reason: CancelReason, text: String, into buffer: inout ByteBuffer) {
        let start = beginFrame(into: &buffer)
        buffer.writeInteger(reason.rawValue)
        buffer.writeString(String(text.prefix(256)))
        endFrame(at: start, type: .cancel, flags: [], callID: callID, into: &buffer)
    }

    /// Grants the peer `increment` more bytes of MESSAGE payload on `callID`.
    public static func writeWindow(callID: UInt32, increment: UInt32, into buffer: inout ByteBuffer) {
        buffer.writeFrameHeader(type: .window, flags: [], callID: callID, payloadLength: 4)
        buffer.writeInteger(increment)
    }

    public static func writePing(_ type: FrameType, data: UInt64, into buffer: inout ByteBuffer) {
        buffer.writeFrameHeader(type: type, flags: [], callID: 0, payloadLength: 8)
        buffer.writeInteger(data)
    }

    public static func writeHello(_ hello: Hello, into buffer: inout ByteBuffer) {
        let start = buffer.writerIndex
        buffer.writeRepeatingByte(0, count: Frame.headerSize)
        hello.write(to: &buffer)
        buffer.setFrameHeader(at: start, type: .hello, flags: [], callID: 0)
    }

    public static func writeGoAway(_ goAway: GoAway, into buffer: inout ByteBuffer) {
        let start = buffer.writerIndex
        buffer.writeRepeatingByte(0, count: Frame.headerSize)
        goAway.write(to: &buffer)
        buffer.setFrameHeader(at: start, type: .goAway, flags: [], callID: 0)
    }

    // MARK: - Internals

    private struct Prepared {
        var bytes: ByteBuffer
        var compressed: Bool
    }

    private func prepare(_ message: ByteBuffer, compress: Bool) -> Prepared {
        guard compress, settings.deflateEnabled, message.readableBytes >= settings.compressionThreshold
        else { return Prepared(bytes: message, compressed: false) }
        var output = ByteBufferAllocator().buffer(capacity: message.readableBytes)
        if deflater.compress(message, into: &output) {
            return Prepared(bytes: output, compressed: true)
        }
        return Prepared(bytes: message, compressed: false)
    }

    private func fitsInline(_ message: ByteBuffer, headStart: Int, buffer: ByteBuffer) -> Bool {
        let payloadSoFar = buffer.writerIndex - headStart - Frame.headerSize
        return payloadSoFar + message.readableBytes <= settings.peer.maxFrameSize
    }

    private func writeFragments(callID: UInt32, _ prepared: Prepared, endStream: Bool, into buffer: inout ByteBuffer) {
        var remaining = prepared.bytes
        let chunk = settings.peer.maxFrameSize
        var first = true
        repeat {
            let length = min(chunk, remaining.readableBytes)
            // readSlice of at most readableBytes always succeeds.
            let slice = remaining.readSlice(length: length) ?? ByteBuffer()
            var flags: FrameFlags = []
            if first, prepared.compressed { flags.insert(.compressed) }
            if remaining.readableBytes > 0 {
                flags.insert(.more)
            } else if endStream {
                flags.insert(.endStream)
            }
            buffer.writeFrameHeader(type: .message, flags: flags, callID: callID, payloadLength: length)
            buffer.writeImmutableBuffer(slice)
            first = false
        } while remaining.readableBytes > 0
    }

    private func beginFrame(into buffer: inout ByteBuffer) -> Int {
        let start = buffer.writerIndex
        buffer.writeRepeatingByte(0, count: Frame.headerSize)
        return start
    }

    private func endFrame(at start: Int, type: FrameType, flags: FrameFlags, callID: UInt32, into buffer: inout ByteBuffer) {
        buffer.setFrameHeader(at: start, type: type, flags: flags, callID: callID)
    }
}

extension ByteBuffer {
    /// Fills in a header reserved at `start` once the payload after it is written.
    fileprivate mutating func setFrameHeader(at start: Int, type: FrameType, flags: FrameFlags, callID: UInt32) {
        let payloadLength = writerIndex - start - Frame.headerSize
        setMultipleIntegers(UInt32(payloadLength), type.rawValue, flags.rawValue, callID, at: start)
    }
}
