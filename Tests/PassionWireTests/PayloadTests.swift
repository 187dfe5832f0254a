import NIOCore
import Testing

@testable import PassionWire

@Suite("Frame payloads")
struct PayloadTests {
    @Test("CALL header round-trips with binary metadata and leaves the message")
    func callHead() throws {
        var metadata = Metadata()
        metadata.add("authorization", "Bearer abc")
        metadata.add("trace-bin", bytes: [0, 255, 10])
        metadata.add("authorization", "second")
        let head = CallHead(method: "passion.v1.Diagnostics/Echo", timeoutMicroseconds: 1_500_000, metadata: metadata)
        var buffer = ByteBuffer()
        head.write(to: &buffer)
        buffer.writeBytes([0x0A, 0x02, 0x68, 0x69])
        let decoded = try CallHead.read(from: &buffer, metadataLimit: 1024)
        #expect(decoded == head)
        #expect(decoded.metadata.values("authorization").count == 2)
        #expect(Array(buffer.readableBytesView) == [0x0A, 0x02, 0x68, 0x69])
    }

    @Test("values arrive as text when UTF-8 and as bytes otherwise; either way the same bytes, equal and hashed alike")
    func metadataValueForms() throws {
        var sent = Metadata()
        sent.add("text", "caf\u{E9} \u{1F600}")
        sent.add("binary", bytes: [0xFF, 0x00, 0xC3])
        sent.add("utf8-as-bytes", bytes: Array("plain".utf8))
        sent.add("empty", "")
        var buffer = ByteBuffer()
        buffer.writeMetadata(sent)
        #expect(buffer.readableBytes == sent.encodedSize)
        let received = try buffer.readMetadata(limit: 1024)
        #expect(buffer.readableBytes == 0)
        #expect(received == sent && received.hashValue == sent.hashValue)
        #expect(received["text"] == "caf\u{E9} \u{1F600}" && received["binary"] == nil && received["empty"] == "")
        #expect(received.values("binary") == [[0xFF, 0x00, 0xC3]] && received.values("text") == [Array("caf\u{E9} \u{1F600}".utf8)])
        #expect(received.map(\.valueCount) == [10, 3, 5, 0])
        // Text compares by its bytes: canonically equivalent spellings are different values.
        let composed: Metadata = ["k": "caf\u{E9}"]
        let decomposed: Metadata = ["k": "cafe\u{301}"]
        #expect(composed != decomposed)
        var bytes = Metadata()
        bytes.add("k", bytes: Array("caf\u{E9}".utf8))
        #expect(composed == bytes && composed.hashValue == bytes.hashValue)
        // A value set as bytes replaces the text.
        var entry = try #require(received.entries.first)
        entry.value = [1, 2]
        #expect(entry.valueCount == 2 && entry.stringValue == "\u{1}\u{2}")
    }

    @Test("truncated CALL headers are malformed, never a crash", arguments: 0..<12)
    func truncatedCall(length: Int) {
        var full = ByteBuffer()
        CallHead(method: "a/b", timeoutMicroseconds: 5, metadata: ["k": "v"]).write(to: &full)
        var cut = full.getSlice(at: 0, length: min(length, full.readableBytes - 1)) ?? ByteBuffer()
        #expect(throws: WireError.self) { try CallHead.read(from: &cut, metadataLimit: 1024) }
    }

    @Test("metadata over the limit is rejected while reading")
    func metadataLimit() throws {
        var metadata = Metadata()
        for index in 0..<100 { metadata.add("key-\(index)", String(repeating: "x", count: 100)) }
        var buffer = ByteBuffer()
        buffer.writeMetadata(metadata)
        #expect {
            try buffer.readMetadata(limit: 1024)
        } throws: { ($0 as? WireError)?.kind == .metadataTooLarge }
    }

    @Test("a block claiming more entries than its bytes hold is a truncated entry, not a read past the end")
    func metadataCountBeyondBytes() throws {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt16.max)
        buffer.writeBytes([1, UInt8(ascii: "k"), 0, 1, UInt8(ascii: "v")])
        #expect {
            try buffer.readMetadata(limit: 1024)
        } throws: { ($0 as? WireError)?.kind == .malformedFrame && ($0 as? WireError)?.message == "truncated metadata entry" }
    }

    @Test("invalid metadata keys are rejected on both sides", arguments: ["", "Upper", "sp ace", "ünï", String(repeating: "k", count: 256)])
    func invalidKeys(key: String) throws {
        #expect(Metadata.isValidKey(key) == false)
        var metadata = Metadata()
        metadata.add(key, "v")
        #expect(throws: WireError.self) { try metadata.validate(limit: 4096) }
    }

    @Test("TRAILERS carry status, message, details and metadata")
    func trailers() throws {
        let head = TrailersHead(
            status: 9, message: "not enough coins", reason: "INSUFFICIENT_FUNDS", fields: ["balance": "40"],
            metadata: ["retry-after-ms": "100"])
        var buffer = ByteBuffer()
        head.write(to: &buffer)
        #expect(try TrailersHead.read(from: &buffer, metadataLimit: 1024) == head)
        #expect(buffer.readableBytes == 0)
    }

    @Test("a status message with invalid UTF-8 is repaired, not fatal")
    func invalidUTF8Message() throws {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt8(2))
        buffer.writeInteger(UInt16(3))
        buffer.writeBytes([0x61, 0xFF, 0x62])
        buffer.writeBytes([0, 0, 0, 0, 0])
        let head = try TrailersHead.read(from: &buffer, metadataLimit: 1024)
        #expect(head.message == "a\u{FFFD}b")
    }

    @Test("an over-long status message is cut at a character boundary")
    func longMessage() throws {
        let head = TrailersHead(status: 2, message: String(repeating: "é", count: 5000))
        var buffer = ByteBuffer()
        head.write(to: &buffer)
        let decoded = try TrailersHead.read(from: &buffer, metadataLimit: 1024)
        #expect(decoded.message.utf8.count <= TrailersHead.maxMessageBytes)
        #expect(decoded.message.allSatisfy { $0 == "é" })
    }

    @Test("GOAWAY round-trips")
    func goAway() throws {
        var buffer = ByteBuffer()
        GoAway(lastCallID: 41, code: .enhanceYourCalm, debugMessage: "too many pings").write(to: &buffer)
        #expect(try GoAway.read(from: &buffer) == GoAway(lastCallID: 41, code: .enhanceYourCalm, debugMessage: "too many pings"))
    }

    @Test("HELLO settings round-trip; absent settings take defaults; unknown ids are ignored")
    func hello() throws {
        var settings = ConnectionSettings()
        settings.maxFrameSize = 32 * 1024
        settings.maxConcurrentCalls = 7
        var hello = settings.hello
        hello[Hello.Setting(rawValue: 999)] = 12345
        var buffer = ByteBuffer()
        hello.write(to: &buffer)
        let decoded = try ConnectionSettings(peer: try Hello.read(from: &buffer))
        #expect(decoded.maxFrameSize == 32 * 1024)
        #expect(decoded.maxConcurrentCalls == 7)

        // An empty HELLO means protocol defaults, and no compression: absent means unsupported.
        var empty = ByteBuffer()
        var expected = ConnectionSettings()
        expected.compression = []
        #expect(try ConnectionSettings(peer: try Hello.read(from: &empty)) == expected)
    }

    @Test("HELLO values out of range or of the wrong shape are refused")
    func badHello() throws {
        var tooSmall = Hello()
        tooSmall[.maxFrameSize] = 100
        #expect(throws: WireError.self) { try ConnectionSettings(peer: tooSmall) }
        var version = Hello()
        version[.protocolVersion] = 2
        #expect(throws: WireError.self) { try ConnectionSettings(peer: version) }
        var ragged = ByteBuffer(bytes: [0, 1, 0])
        #expect(throws: WireError.self) { try Hello.read(from: &ragged) }
    }
}
