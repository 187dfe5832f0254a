import NIOCore
import Testing

@testable import PassionWire

@Suite("Frame decoding")
struct FrameDecoderTests {
    private func frames(_ bytes: [UInt8], maxPayload: Int = 64 * 1024, chunk: Int? = nil) throws -> [Frame] {
        let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxPayloadSize: maxPayload))
        var decoded: [Frame] = []
        let step = chunk ?? max(bytes.count, 1)
        var offset = 0
        while offset < bytes.count {
            let slice = ByteBuffer(bytes: bytes[offset..<min(offset + step, bytes.count)])
            try processor.process(buffer: slice) { decoded.append($0) }
            offset += step
        }
        return decoded
    }

    private func encode(_ frames: [Frame]) -> [UInt8] {
        var buffer = ByteBuffer()
        for frame in frames { buffer.writeFrame(frame) }
        return Array(buffer.readableBytesView)
    }

    static let everyType: [Frame] = [
        Frame(type: .hello, payload: ByteBuffer(bytes: [0, 1, 0, 0, 0, 0, 0, 0, 0, 1])),
        Frame(type: .call, flags: [.hasMessage, .endStream], callID: 1, payload: ByteBuffer(bytes: [1, 2, 3])),
        Frame(type: .message, flags: [.more, .compressed], callID: 1, payload: ByteBuffer(bytes: [9])),
        Frame(type: .halfClose, flags: .endStream, callID: 1, payload: ByteBuffer()),
        Frame(type: .headers, callID: 1, payload: ByteBuffer(bytes: [0, 0])),
        Frame(type: .trailers, flags: .hasMessage, callID: 1, payload: ByteBuffer(bytes: [0, 0, 0, 0])),
        Frame(type: .cancel, callID: 3, payload: ByteBuffer(bytes: [1])),
        Frame(type: .ping, payload: ByteBuffer(bytes: [1, 2, 3, 4, 5, 6, 7, 8])),
        Frame(type: .pong, payload: ByteBuffer(bytes: [1, 2, 3, 4, 5, 6, 7, 8])),
        Frame(type: .goAway, payload: ByteBuffer(bytes: [0, 0, 0, 7, 0])),
        Frame(type: FrameType(rawValue: 0x42), flags: .ignorable, payload: ByteBuffer(bytes: [0xFF])),
    ]

    @Test("every frame type round-trips, coalesced in one buffer")
    func coalesced() throws {
        let decoded = try frames(encode(Self.everyType))
        #expect(decoded == Self.everyType)
    }

    @Test("frames split at every byte boundary decode the same", arguments: [1, 3, 7, 10, 11])
    func fragmentedInput(chunk: Int) throws {
        let decoded = try frames(encode(Self.everyType), chunk: chunk)
        #expect(decoded == Self.everyType)
    }

    @Test("the header layout is length u32, type, flags, call id u32, big-endian")
    func headerLayout() {
        let bytes = encode([Frame(type: .message, flags: [.endStream, .more], callID: 0x0102_0304, payload: ByteBuffer(bytes: [0xAA, 0xBB]))])
        #expect(bytes == [0, 0, 0, 2, 0x03, 0x09, 1, 2, 3, 4, 0xAA, 0xBB])
    }

    @Test("an oversize frame is refused from its header, before the body arrives")
    func oversizeRejectedEarly() throws {
        let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxPayloadSize: 16 * 1024))
        // Only the 10 header bytes, declaring 1 GiB.
        let header = ByteBuffer(bytes: [0x40, 0, 0, 0, 0x03, 0, 0, 0, 0, 1])
        #expect {
            try processor.process(buffer: header) { _ in }
        } throws: { error in
            (error as? WireError)?.kind == .frameTooLarge && (error as? WireError)?.goAwayCode == .frameSizeError
        }
    }

    @Test("a frame of exactly the maximum size is accepted")
    func maximumSizeAccepted() throws {
        let payload = ByteBuffer(repeating: 7, count: 16 * 1024)
        let decoded = try frames(encode([Frame(type: .message, callID: 1, payload: payload)]), maxPayload: 16 * 1024)
        #expect(decoded.first?.payload.readableBytes == 16 * 1024)
    }

    @Test("the preface is accepted whole or in pieces, garbage fails at the first wrong byte")
    func preface() throws {
        var whole = ByteBuffer(bytes: ConnectionPreface.bytes + [0xAB])
        #expect(try ConnectionPreface.consume(&whole))
        #expect(whole.readableBytes == 1)

        var partial = ByteBuffer(bytes: Array(ConnectionPreface.bytes.prefix(3)))
        #expect(try ConnectionPreface.consume(&partial) == false)
        #expect(partial.readableBytes == 3)

        var garbage = ByteBuffer(string: "GET / HTTP/1.1\r\n")
        #expect(throws: WireError(.badPreface, "connection did not start with the passion/1 preface")) {
            try ConnectionPreface.consume(&garbage)
        }
        var earlyGarbage = ByteBuffer(bytes: [0x50, 0x41, 0x00])
        #expect(throws: WireError.self) { try ConnectionPreface.consume(&earlyGarbage) }
    }
}
