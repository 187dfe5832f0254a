import Foundation
import NIOCore
import Testing

@testable import PassionWire

/// Protocol/WIRE.md's example dumps must be exactly what the encoder produces.
@Suite("WIRE.md examples")
struct WireSpecTests {
    /// The bytes of the `hex` block after `<!-- dump: NAME -->`.
    private func dump(_ name: String) throws -> [UInt8] {
        let specURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Protocol/WIRE.md")
        let spec = try String(contentsOf: specURL, encoding: .utf8)
        let marker = try #require(spec.range(of: "<!-- dump: \(name) -->"), "WIRE.md has no dump named \(name)")
        let rest = spec[marker.upperBound...]
        let open = try #require(rest.range(of: "```hex\n"))
        let close = try #require(rest[open.upperBound...].range(of: "```"))
        var bytes: [UInt8] = []
        for line in rest[open.upperBound..<close.lowerBound].split(separator: "\n") {
            let data = line.split(separator: ";", maxSplits: 1)[0]
            let fields = data.split(separator: ":", maxSplits: 1)
            guard fields.count == 2 else { continue }
            let offset = try #require(Int(fields[0].trimmingCharacters(in: .whitespaces), radix: 16))
            #expect(offset == bytes.count, "offset \(fields[0]) in dump \(name) does not follow the bytes before it")
            for hex in fields[1].split(separator: " ") { bytes.append(try #require(UInt8(hex, radix: 16))) }
        }
        return bytes
    }

    private var settings: NegotiatedSettings {
        NegotiatedSettings(local: ConnectionSettings(), peer: ConnectionSettings())
    }

    @Test("the CALL dump is FrameWriter's unary request")
    func call() throws {
        var buffer = ByteBuffer()
        FrameWriter(settings: settings).writeCall(
            callID: 1, head: CallHead(method: "passion.v1.Diagnostics/Echo"), message: ByteBuffer(bytes: [0x0A, 0x02, 0x68, 0x69]),
            endStream: true, compress: true, into: &buffer)
        #expect(try dump("call") == Array(buffer.readableBytesView))
    }

    @Test("the TRAILERS dump is FrameWriter's OK response")
    func trailers() throws {
        var buffer = ByteBuffer()
        FrameWriter(settings: settings).writeTrailers(
            callID: 1, head: TrailersHead(status: 0), message: ByteBuffer(bytes: [0x0A, 0x02, 0x68, 0x69]), compress: true,
            into: &buffer)
        #expect(try dump("trailers") == Array(buffer.readableBytesView))
    }

    @Test("the HELLO dumps are the client's and the server's default settings")
    func hellos() throws {
        var client = ByteBuffer()
        FrameWriter.writeHello(ConnectionSettings().hello, into: &client)
        #expect(try dump("client-hello") == Array(client.readableBytesView))
        var serverSettings = ConnectionSettings()
        serverSettings.idleTimeoutMillis = 300_000
        var server = ByteBuffer()
        FrameWriter.writeHello(serverSettings.hello, into: &server)
        #expect(try dump("server-hello") == Array(server.readableBytesView))
    }
}
