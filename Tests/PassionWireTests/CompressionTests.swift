import NIOCore
import Testing

@testable import PassionWire

@Suite("Compression and fragmentation")
struct CompressionTests {
    private func negotiated(maxFrame: Int = 16 * 1024, maxMessage: Int = 4 * 1024 * 1024, threshold: Int = 1024) -> NegotiatedSettings {
        var local = ConnectionSettings()
        local.maxFrameSize = maxFrame
        local.maxMessageSize = maxMessage
        local.compressionThreshold = threshold
        return NegotiatedSettings(local: local, peer: local)
    }

    private func decodeAll(_ buffer: ByteBuffer, maxFrame: Int) throws -> [Frame] {
        let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxPayloadSize: maxFrame))
        var frames: [Frame] = []
        try processor.process(buffer: buffer) { frames.append($0) }
        return frames
    }

    /// Runs every MESSAGE/CALL/TRAILERS message part through an assembler, as a receiver does.
    private func reassemble(_ frames: [Frame], settings: NegotiatedSettings) throws -> [ByteBuffer] {
        var assembler = MessageAssembler()
        let inflater = Inflater()
        var messages: [ByteBuffer] = []
        for frame in frames where frame.type == .message {
            if let message = try assembler.append(
                frame.payload, flags: frame.flags, settings: settings, inflater: inflater, allocator: ByteBufferAllocator())
            {
                messages.append(message)
            }
        }
        return messages
    }

    @Test("zlib round-trips and is RFC 1950 framed")
    func roundTrip() throws {
        let input = ByteBuffer(string: String(repeating: "passion ", count: 1000))
        var output = ByteBuffer()
        #expect(Deflater().compress(input, into: &output))
        #expect(output.readableBytes < input.readableBytes)
        // zlib header: CMF 0x78 (deflate, 32 KiB window), FCHECK makes CMF*256+FLG divisible by 31.
        let cmf = output.getInteger(at: 0, as: UInt8.self) ?? 0
        let flg = output.getInteger(at: 1, as: UInt8.self) ?? 0
        #expect(cmf == 0x78 && (UInt16(cmf) << 8 | UInt16(flg)) % 31 == 0)
        let restored = try Inflater().decompress(output, limit: 1 << 20, allocator: ByteBufferAllocator())
        #expect(restored == input)
    }

    @Test("incompressible data is sent as is")
    func incompressible() {
        let random = ByteBuffer(bytes: (0..<4096).map { _ in UInt8.random(in: 0...255) })
        var output = ByteBuffer()
        #expect(Deflater().compress(random, into: &output) == false)
        #expect(output.readableBytes == 0)
    }

    @Test("a 1 KiB bomb inflating past the limit fails with messageTooLarge")
    func bomb() throws {
        let zeros = ByteBuffer(repeating: 0, count: 8 * 1024 * 1024)
        var bomb = ByteBuffer()
        #expect(Deflater(level: 9).compress(zeros, into: &bomb))
        #expect(bomb.readableBytes < 10 * 1024)
        #expect {
            try Inflater().decompress(bomb, limit: 4 * 1024 * 1024, allocator: ByteBufferAllocator())
        } throws: { ($0 as? WireError)?.kind == .messageTooLarge }
    }

    @Test("garbage and truncated zlib streams fail with decompressionFailed")
    func corrupt() throws {
        #expect {
            try Inflater().decompress(ByteBuffer(bytes: [0x78, 0x9C, 0xFF, 0xFF, 0xFF]), limit: 1024, allocator: ByteBufferAllocator())
        } throws: { ($0 as? WireError)?.kind == .decompressionFailed }
        var whole = ByteBuffer()
        _ = Deflater().compress(ByteBuffer(string: String(repeating: "abc", count: 500)), into: &whole)
        let truncated = whole.getSlice(at: 0, length: whole.readableBytes / 2) ?? ByteBuffer()
        #expect {
            try Inflater().decompress(truncated, limit: 1 << 20, allocator: ByteBufferAllocator())
        } throws: { ($0 as? WireError)?.kind == .decompressionFailed }
    }

    @Test("large messages are fragmented to the peer's frame size and reassembled", arguments: [false, true])
    func fragmentation(compress: Bool) throws {
        let settings = negotiated()
        let writer = FrameWriter(settings: settings)
        // Sixteen symbols: compresses to about half, still several frames.
        let message = ByteBuffer(bytes: (0..<100_000).map { _ in UInt8.random(in: 0...15) })
        var buffer = ByteBuffer()
        writer.writeMessage(callID: 5, message: message, endStream: true, compress: compress, into: &buffer)
        let frames = try decodeAll(buffer, maxFrame: 16 * 1024)
        #expect(frames.count > 1)
        #expect(frames.allSatisfy { $0.payload.readableBytes <= 16 * 1024 })
        #expect(frames.dropLast().allSatisfy { $0.flags.contains(.more) && !$0.flags.contains(.endStream) })
        #expect(frames.last?.flags.contains(.endStream) == true)
        #expect(try reassemble(frames, settings: settings) == [message])
    }

    @Test("small messages are never compressed; large ones only when smaller")
    func threshold() throws {
        let writer = FrameWriter(settings: negotiated(threshold: 1024))
        var small = ByteBuffer()
        writer.writeMessage(callID: 1, message: ByteBuffer(repeating: 0, count: 1000), endStream: false, compress: true, into: &small)
        #expect(try decodeAll(small, maxFrame: 1 << 20).first?.flags.contains(.compressed) == false)
        var large = ByteBuffer()
        writer.writeMessage(callID: 1, message: ByteBuffer(repeating: 0, count: 5000), endStream: false, compress: true, into: &large)
        let frame = try decodeAll(large, maxFrame: 1 << 20).first
        #expect(frame?.flags.contains(.compressed) == true)
        #expect((frame?.payload.readableBytes ?? .max) < 100)
    }

    @Test("reassembled messages over the limit fail as they arrive")
    func oversizeAcrossFragments() throws {
        let settings = negotiated(maxMessage: 20_000)
        var assembler = MessageAssembler()
        let inflater = Inflater()
        let fragment = ByteBuffer(repeating: 1, count: 16 * 1024)
        _ = try assembler.append(fragment, flags: .more, settings: settings, inflater: inflater, allocator: ByteBufferAllocator())
        #expect {
            try assembler.append(fragment, flags: .more, settings: settings, inflater: inflater, allocator: ByteBufferAllocator())
        } throws: { ($0 as? WireError)?.kind == .messageTooLarge }
    }

    @Test("COMPRESSED without negotiated deflate is refused")
    func compressionNotNegotiated() throws {
        var local = ConnectionSettings()
        local.compression = []
        let settings = NegotiatedSettings(local: local, peer: ConnectionSettings())
        var assembler = MessageAssembler()
        #expect {
            try assembler.append(
                ByteBuffer(bytes: [1]), flags: .compressed, settings: settings, inflater: Inflater(), allocator: ByteBufferAllocator())
        } throws: { ($0 as? WireError)?.kind == .compressionNotNegotiated }
    }

    @Test("a unary response that does not fit in one frame goes as MESSAGE frames, then TRAILERS")
    func largeTrailers() throws {
        let writer = FrameWriter(settings: negotiated())
        var buffer = ByteBuffer()
        writer.writeTrailers(
            callID: 3, head: TrailersHead(status: 0), message: ByteBuffer(repeating: 9, count: 40_000), compress: false,
            into: &buffer)
        let frames = try decodeAll(buffer, maxFrame: 16 * 1024)
        #expect(frames.map(\.type) == [.message, .message, .message, .trailers])
        #expect(frames.last?.flags.contains(.hasMessage) == false)
    }

    @Test("a small unary call and its response are one frame each")
    func unaryIsOneFrameEachWay() throws {
        let writer = FrameWriter(settings: negotiated())
        var request = ByteBuffer()
        writer.writeCall(
            callID: 1, head: CallHead(method: "passion.v1.Diagnostics/Echo"), message: ByteBuffer(bytes: [0x0A, 0x02, 0x68, 0x69]),
            endStream: true, compress: true, into: &request)
        let call = try decodeAll(request, maxFrame: 16 * 1024)
        #expect(call.count == 1 && call[0].type == .call && call[0].flags == [.hasMessage, .endStream])
        var response = ByteBuffer()
        writer.writeTrailers(
            callID: 1, head: TrailersHead(status: 0), message: ByteBuffer(bytes: [0x0A, 0x02, 0x68, 0x69]), compress: true,
            into: &response)
        let trailers = try decodeAll(response, maxFrame: 16 * 1024)
        #expect(trailers.count == 1 && trailers[0].type == .trailers && trailers[0].flags == .hasMessage)
    }
}
