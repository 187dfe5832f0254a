import CZlib
import NIOCore

/// Compresses messages in zlib format (RFC 1950, window bits 15), one context per message.
///
/// The stream is reset between messages rather than reallocated: zlib's state is 256 KiB and
/// allocating it per message would dominate small-message cost.
public final class Deflater {
    private let stream: UnsafeMutablePointer<z_stream>

    public init(level: Int32 = Z_DEFAULT_COMPRESSION) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let status = passion_deflate_init(stream, level)
        // Only out-of-memory fails here; there is nothing sensible to continue with.
        precondition(status == Z_OK, "deflateInit2 failed: \(status)")
    }

    deinit {
        deflateEnd(stream)
        stream.deallocate()
    }

    /// Appends the compressed form of `input` to `output` and returns true, or leaves
    /// `output` unchanged and returns false when compression would not make it smaller.
    public func compress(_ input: ByteBuffer, into output: inout ByteBuffer) -> Bool {
        defer { deflateReset(stream) }
        let inputCount = input.readableBytes
        // Worth sending compressed only if strictly smaller than the input.
        let budget = inputCount - 1
        guard budget > 0 else { return false }
        let start = output.writerIndex
        output.reserveCapacity(minimumWritableBytes: budget)
        let result: Int32 = input.withUnsafeReadableBytes { inputBytes in
            output.withUnsafeMutableWritableBytes { outputBytes in
                stream.pointee.next_in = UnsafeMutablePointer(
                    mutating: inputBytes.bindMemory(to: Bytef.self).baseAddress)
                stream.pointee.avail_in = UInt32(inputCount)
                stream.pointee.next_out = outputBytes.bindMemory(to: Bytef.self).baseAddress
                stream.pointee.avail_out = UInt32(budget)
                return deflate(stream, Z_FINISH)
            }
        }
        guard result == Z_STREAM_END else { return false }
        output.moveWriterIndex(to: start + Int(stream.pointee.total_out))
        return true
    }
}

/// Inflates zlib messages with a hard output limit, so a small bomb cannot allocate more
/// than the maximum message size.
public final class Inflater {
    private let stream: UnsafeMutablePointer<z_stream>

    public init() {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let status = passion_inflate_init(stream)
        precondition(status == Z_OK, "inflateInit2 failed: \(status)")
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    /// Inflates `input` into a new buffer of at most `limit` bytes.
    public func decompress(
        _ input: ByteBuffer, limit: Int, allocator: ByteBufferAllocator
    ) throws -> ByteBuffer {
        defer { inflateReset(stream) }
        var output = allocator.buffer(capacity: min(max(input.readableBytes * 4, 256), limit))
        var input = input
        while true {
            if output.writableBytes == 0, output.capacity < limit {
                output.reserveCapacity(min(output.capacity * 2, limit))
            }
            let consumedBefore = stream.pointee.total_in
            let producedBefore = stream.pointee.total_out
            let room = limit - output.readableBytes
            let status: Int32 = input.withUnsafeReadableBytes { inputBytes in
                output.withUnsafeMutableWritableBytes { outputBytes in
                    stream.pointee.next_in = UnsafeMutablePointer(
                        mutating: inputBytes.bindMemory(to: Bytef.self).baseAddress)
                    stream.pointee.avail_in = UInt32(inputBytes.count)
                    stream.pointee.next_out = outputBytes.bindMemory(to: Bytef.self).baseAddress
                    stream.pointee.avail_out = UInt32(min(outputBytes.count, room))
                    return inflate(stream, Z_NO_FLUSH)
                }
            }
            input.moveReaderIndex(forwardBy: Int(stream.pointee.total_in - consumedBefore))
            output.moveWriterIndex(forwardBy: Int(stream.pointee.total_out - producedBefore))
            switch status {
            case Z_STREAM_END:
                guard input.readableBytes == 0 else {
                    throw WireError(.decompressionFailed, "bytes after the end of the zlib stream")
                }
                return output
            case Z_OK:
                continue
            case Z_BUF_ERROR:
                // No progress possible: either the output is full or the input ran out.
                if output.readableBytes >= limit {
                    throw WireError(.messageTooLarge, "message inflates past \(limit) bytes")
                }
                if input.readableBytes == 0 {
                    throw WireError(.decompressionFailed, "truncated zlib stream")
                }
                continue
            default:
                throw WireError(.decompressionFailed, "invalid zlib stream (\(status))")
            }
        }
    }
}
