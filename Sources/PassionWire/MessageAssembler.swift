import NIOCore

/// Reassembles one direction of a call's messages from frames: fragments are joined, the size
/// limit is enforced as they arrive, and compressed messages are inflated with that limit.
public struct MessageAssembler {
    private var fragments: ByteBuffer?
    private var compressed = false

    public init() {}

    /// Whether a fragmented message is partly received.
    public var isAssembling: Bool { fragments != nil }

    /// Takes the message bytes of one frame. Returns the complete message once its last
    /// fragment arrived, nil while more fragments are expected.
    ///
    /// A single-frame uncompressed message is returned as the frame's own slice: no copy.
    public mutating func append(
        _ bytes: ByteBuffer, flags: FrameFlags, settings: NegotiatedSettings, inflater: Inflater,
        allocator: ByteBufferAllocator
    ) throws -> ByteBuffer? {
        let limit = settings.local.maxMessageSize
        var whole: ByteBuffer
        if var pending = fragments {
            // Released before appending, so the buffer is uniquely referenced and grows in place
            // instead of being copied once per fragment.
            fragments = nil
            guard pending.readableBytes + bytes.readableBytes <= limit else {
                throw WireError(.messageTooLarge, "message exceeds \(limit) bytes")
            }
            var fragment = bytes
            pending.writeBuffer(&fragment)
            if flags.contains(.more) {
                fragments = pending
                return nil
            }
            whole = pending
        } else {
            if flags.contains(.compressed), !settings.local.compression.contains(.deflate) {
                throw WireError(.compressionNotNegotiated, "compressed message but deflate was not offered")
            }
            guard bytes.readableBytes <= limit else {
                throw WireError(.messageTooLarge, "message exceeds \(limit) bytes")
            }
            compressed = flags.contains(.compressed)
            if flags.contains(.more) {
                var copy = allocator.buffer(capacity: bytes.readableBytes * 2)
                var fragment = bytes
                copy.writeBuffer(&fragment)
                fragments = copy
                return nil
            }
            whole = bytes
        }
        guard compressed else { return whole }
        return try inflater.decompress(whole, limit: limit, allocator: allocator)
    }
}
