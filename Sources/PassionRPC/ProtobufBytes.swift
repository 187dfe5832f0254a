import NIOCore
import SwiftProtobuf

/// Lets SwiftProtobuf read from and serialize into a `ByteBuffer` without an intermediate
/// array: a message decodes straight from the bytes the TLS layer decrypted.
struct ProtobufBytes: SwiftProtobufContiguousBytes {
    var buffer: ByteBuffer

    init(_ buffer: ByteBuffer) {
        self.buffer = buffer
    }

    init(repeating: UInt8, count: Int) {
        buffer = ByteBuffer(repeating: repeating, count: count)
    }

    init<S: Sequence>(_ sequence: S) where S.Element == UInt8 {
        buffer = ByteBuffer(bytes: sequence)
    }

    var count: Int { buffer.readableBytes }

    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeReadableBytes(body)
    }

    mutating func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try buffer.withUnsafeMutableReadableBytes(body)
    }
}

extension SwiftProtobuf.Message {
    /// Decodes from a buffer; a parse failure is the caller's INVALID_ARGUMENT.
    public init(buffer: ByteBuffer) throws(RPCError) {
        do {
            try self.init(serializedBytes: ProtobufBytes(buffer))
        } catch {
            throw RPCError(
                code: .invalidArgument, message: "message does not parse as \(Self.protoMessageName)")
        }
    }

    /// Serializes into a new buffer.
    public func serializedBuffer() throws(RPCError) -> ByteBuffer {
        do {
            let bytes: ProtobufBytes = try serializedBytes()
            return bytes.buffer
        } catch {
            throw RPCError(code: .internal, message: "cannot serialize \(Self.protoMessageName)")
        }
    }
}
