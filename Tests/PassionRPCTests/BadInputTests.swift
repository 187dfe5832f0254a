import Foundation
import PassionTestSupport
import NIOCore
import PassionServerAPI
import PassionClient
import PassionRPCServer
import PassionWire
import SwiftProtobuf
import Testing

/// Every kind of bad input WIRE.md lists, sent over real TLS connections: each is answered as
/// the spec says, and a second, well-behaved connection keeps being served.
@Suite("Bad input")
struct BadInputTests {
    static let echo = "passion.v1.Diagnostics/Echo"
    static let sleep = "passion.v1.Diagnostics/Sleep"

    private func open(_ server: TestServer) async throws -> RawConnection {
        try await RawConnection.open(port: server.port, caPath: server.certificates.caPath)
    }

    /// A good client on its own connection still gets answers.
    private func expectStillServing(_ server: TestServer) async throws {
        let connection = try await server.connect()
        #expect(try await connection.diagnostics.echo { $0.payload = Data("ok".utf8) }.payload == Data("ok".utf8))
        await connection.close()
    }

    private func expectGoAway(_ raw: RawConnection, _ code: GoAwayCode, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let frame = try await raw.next(.goAway)
        let goAway = try frame.map(RawFrames.goAway)
        #expect(goAway?.code == code, "got \(String(describing: goAway))", sourceLocation: sourceLocation)
        #expect(try await raw.closes(), sourceLocation: sourceLocation)
    }

    @Test("a garbage preface gets GOAWAY(PROTOCOL_ERROR) and a close")
    func garbagePreface() async throws {
        try await TestServer.with { server in
            let raw = try await open(server)
            try await raw.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
            try await expectGoAway(raw, .protocolError)
            try await expectStillServing(server)
        }
    }

    @Test("a first frame other than HELLO is a protocol error")
    func callBeforeHello() async throws {
        try await TestServer.with { server in
            let raw = try await open(server)
            var bytes = ByteBuffer(bytes: ConnectionPreface.bytes)
            var call = RawFrames.call(1, method: Self.echo, message: [], flags: .endStream)
            bytes.writeBuffer(&call)
            try await raw.send(bytes)
            try await expectGoAway(raw, .protocolError)
        }
    }

    @Test("an unknown frame type closes the connection; the same type marked IGNORABLE is skipped")
    func unknownFrameType() async throws {
        try await TestServer.with { server in
            let tolerant = try await open(server)
            _ = try await tolerant.handshake()
            try await tolerant.send(RawFrames.frame(FrameType(rawValue: 0x42), flags: .ignorable, payload: [1, 2, 3]))
            try await tolerant.send(RawFrames.frame(.ping, payload: [0, 0, 0, 0, 0, 0, 0, 9]))
            #expect(try await tolerant.next(.pong)?.payload == ByteBuffer(bytes: [0, 0, 0, 0, 0, 0, 0, 9]))
            await tolerant.close()

            let strict = try await open(server)
            _ = try await strict.handshake()
            try await strict.send(RawFrames.frame(FrameType(rawValue: 0x42), payload: [1, 2, 3]))
            try await expectGoAway(strict, .protocolError)
            try await expectStillServing(server)
        }
    }

    @Test("an oversize length is refused from the header alone: the body never arrives")
    func oversizeFrameHeader() async throws {
        try await TestServer.with { server in
            let raw = try await open(server)
            _ = try await raw.handshake()
            // Declares 100 MB; only the 10 header bytes are sent.
            var header = ByteBuffer()
            header.writeFrameHeader(type: .message, flags: [], callID: 1, payloadLength: 100_000_000)
            try await raw.send(header)
            try await expectGoAway(raw, .frameSizeError)
            try await expectStillServing(server)
        }
    }

    @Test("a 1 KiB decompression bomb fails its call with RESOURCE_EXHAUSTED; the connection serves on")
    func decompressionBomb() async throws {
        try await TestServer.with(configure: { $0.connection.settings.maxMessageSize = 256 * 1024 }) { server in
            let raw = try await open(server)
            _ = try await raw.handshake()
            // An EchoRequest whose payload is 1 MiB of zeros, deflated to about 1 KiB.
            let request = try EchoRequest.with { $0.payload = Data(count: 1024 * 1024) }.serializedBytes() as [UInt8]
            var bomb = ByteBuffer()
            #expect(Deflater(level: 9).compress(ByteBuffer(bytes: request), into: &bomb))
            #expect(bomb.readableBytes <= 1100)
            try await raw.send(RawFrames.call(1, method: Self.echo, message: Array(bomb.readableBytesView), flags: [.endStream, .compressed]))
            let trailers = try #require(try await raw.next(.trailers))
            #expect(trailers.callID == 1)
            #expect(try RawFrames.trailers(trailers).status == StatusCode.resourceExhausted.rawValue)
            // Same connection, next call: served.
            let small = try EchoRequest.with { $0.payload = Data("hi".utf8) }.serializedBytes() as [UInt8]
            try await raw.send(RawFrames.call(3, method: Self.echo, message: small, flags: .endStream))
            let next = try #require(try await raw.next(.trailers))
            let status = try RawFrames.trailers(next).status
            #expect(next.callID == 3 && status == 0)
        }
    }

    @Test("reusing a call id is a protocol error")
    func callIDReuse() async throws {
        try await TestServer.with { server in
            let raw = try await open(server)
            _ = try await raw.handshake()
            let request = try SleepRequest.with { $0.durationMs = 1000 }.serializedBytes() as [UInt8]
            try await raw.send(RawFrames.call(5, method: Self.sleep, message: request, flags: .endStream))
            try await raw.send(RawFrames.call(5, method: Self.sleep, message: request, flags: .endStream))
            try await expectGoAway(raw, .protocolError)
            try await expectStillServing(server)
        }
    }

    @Test("calls beyond the concurrency limit are refused, unprocessed and safe to retry")
    func tooManyConcurrentCalls() async throws {
        try await TestServer.with(configure: { $0.connection.settings.maxConcurrentCalls = 2 }) { server in
            let raw = try await open(server)
            let settings = try await raw.handshake()
            #expect(settings.maxConcurrentCalls == 2)
            let request = try SleepRequest.with { $0.durationMs = 2000 }.serializedBytes() as [UInt8]
            // One write: the server reads the third CALL with the first two still running, however
            // slowly a loaded machine gets to it (three writes once let the sleeps end first).
            var calls = ByteBuffer()
            for id in [1, 3, 5] as [UInt32] {
                var call = RawFrames.call(id, method: Self.sleep, message: request, flags: .endStream)
                calls.writeBuffer(&call)
            }
            try await raw.send(calls)
            let cancel = try #require(try await raw.next(.cancel))
            #expect(cancel.callID == 5)
            #expect(cancel.payload.getInteger(at: cancel.payload.readerIndex, as: UInt8.self) == CancelReason.refused.rawValue)
            try await expectStillServing(server)
        }
    }

    @Test("the client library queues calls beyond the server's limit instead of failing them")
    func clientRespectsLimit() async throws {
        try await TestServer.with(configure: { $0.connection.settings.maxConcurrentCalls = 4 }) { server in
            let connection = try await server.connect()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<20 {
                    group.addTask { _ = try await connection.diagnostics.sleep(SleepRequest.with { $0.durationMs = 20 }) }
                }
                try await group.waitForAll()
            }
            await connection.close()
        }
    }

    @Test("a rapid CALL+CANCEL flood gets GOAWAY(ENHANCE_YOUR_CALM)")
    func rapidCancelFlood() async throws {
        try await TestServer.with { server in
            let raw = try await open(server)
            _ = try await raw.handshake()
            let request = try SleepRequest.with { $0.durationMs = 10_000 }.serializedBytes() as [UInt8]
            var burst = ByteBuffer()
            for index in 0..<2000 {
                let id = UInt32(index * 2 + 1)
                var call = RawFrames.call(id, method: Self.sleep, message: request, flags: .endStream)
                burst.writeBuffer(&call)
                var cancel = RawFrames.frame(.cancel, callID: id, payload: [CancelReason.cancelled.rawValue])
                burst.writeBuffer(&cancel)
            }
            try await raw.send(burst)
            try await expectGoAway(raw, .enhanceYourCalm)
            try await expectStillServing(server)
        }
    }

    @Test("a ping flood gets GOAWAY(ENHANCE_YOUR_CALM)")
    func pingFlood() async throws {
        try await TestServer.with { server in
            let raw = try await open(server)
            _ = try await raw.handshake()
            var burst = ByteBuffer()
            for index in 0..<100 {
                var ping = RawFrames.frame(.ping, payload: [0, 0, 0, 0, 0, 0, 0, UInt8(index)])
                burst.writeBuffer(&ping)
            }
            try await raw.send(burst)
            try await expectGoAway(raw, .enhanceYourCalm)
            try await expectStillServing(server)
        }
    }

    @Test("metadata over the limit fails the call with RESOURCE_EXHAUSTED")
    func oversizeMetadata() async throws {
        try await TestServer.with { server in
            let raw = try await open(server)
            _ = try await raw.handshake()
            var metadata = Metadata()
            for index in 0..<40 { metadata.add("key-\(index)", String(repeating: "v", count: 1000)) }
            try await raw.send(RawFrames.call(1, method: Self.echo, message: [], flags: .endStream, metadata: metadata))
            let trailers = try #require(try await raw.next(.trailers))
            #expect(try RawFrames.trailers(trailers).status == StatusCode.resourceExhausted.rawValue)
        }
    }

    @Test("an undecodable request is INVALID_ARGUMENT; a unary call with two messages is UNIMPLEMENTED")
    func malformedMessages() async throws {
        try await TestServer.with { server in
            let raw = try await open(server)
            _ = try await raw.handshake()
            try await raw.send(RawFrames.call(1, method: Self.echo, message: [0xFF, 0xFF, 0xFF], flags: .endStream))
            let first = try #require(try await raw.next(.trailers))
            #expect(try RawFrames.trailers(first).status == StatusCode.invalidArgument.rawValue)

            try await raw.send(RawFrames.call(3, method: Self.echo, message: []))
            try await raw.send(RawFrames.frame(.message, flags: .endStream, callID: 3, payload: []))
            let second = try #require(try await raw.next(.trailers))
            #expect(second.callID == 3)
            #expect(try RawFrames.trailers(second).status == StatusCode.unimplemented.rawValue)
        }
    }

    @Test("HEADERS or TRAILERS from a client are protocol errors", arguments: [FrameType.headers, .trailers, .hello])
    func serverOnlyFrames(type: FrameType) async throws {
        try await TestServer.with { server in
            let raw = try await open(server)
            _ = try await raw.handshake()
            try await raw.send(RawFrames.frame(type, callID: type == .hello ? 0 : 1, payload: [0, 0]))
            try await expectGoAway(raw, .protocolError)
        }
    }

    @Test("a GOAWAY for a protocol error arrives even while the client still has data in flight (no TCP reset)")
    func goAwayBeforeReset() async throws {
        // The drain is what is tested; its length (1 s by default) only has to outlast a client
        // that is slow to read, and with the whole suite running a client here can be slower.
        try await TestServer.with(tls: { _ in nil }, configure: { $0.connection.errorDrainTime = .seconds(10) }, routes: { _ in }) { server in
            for round in 0..<20 {
                // A client that writes a bad frame and 4 MB behind it before it reads anything.
                let raw = try await RawConnection.openPlaintext(port: server.port)
                var hello = ByteBuffer(bytes: ConnectionPreface.bytes)
                FrameWriter.writeHello(ConnectionSettings().hello, into: &hello)
                try await raw.send(hello)
                var burst = RawFrames.frame(FrameType(rawValue: 0x7E), callID: 0)
                for id in stride(from: UInt32(1), to: 140, by: 2) {
                    var call = RawFrames.call(id, method: Self.echo, message: Array(repeating: 0, count: 60_000), flags: .endStream)
                    burst.writeBuffer(&call)
                }
                try? await raw.send(burst)
                var frames: [Frame] = []
                while true {
                    raw.read()
                    guard let frame = try await raw.next(timeout: .seconds(10)) else { break }
                    frames.append(frame)
                    if frame.type == .goAway { break }
                }
                let goAway = try frames.last { $0.type == .goAway }.map(RawFrames.goAway)
                #expect(goAway?.code == .protocolError, "round \(round): \(frames.map(\.type))")
                await raw.close()
            }
        }
    }

    @Test("a client that completes TLS but never says HELLO is closed after the handshake timeout")
    func handshakeTimeout() async throws {
        try await TestServer.with(configure: { $0.connection.handshakeTimeout = .milliseconds(200) }) { server in
            let raw = try await open(server)
            #expect(try await raw.closes(within: .seconds(30)))
        }
    }
}
