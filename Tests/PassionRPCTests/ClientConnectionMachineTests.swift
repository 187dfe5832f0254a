import NIOCore
@testable import PassionRPC
@testable import PassionRPCServer
import PassionWire
import Testing

/// The client connection's state machine, frame by frame as a server would send them: no
/// sockets, no event loop. What it queues for the server comes out decoded.
@Suite("Client connection state machine")
struct ClientConnectionMachineTests {
    typealias C = ClientHarness

    // MARK: Handshake and call slots

    @Test("the preface and HELLO go first; calls made before the server's HELLO start after it, in order")
    func handshake() {
        var fresh = ClientConnectionMachine(settings: ConnectionSettings())
        var raw = fresh.queue.takeOutput(allocator: ByteBufferAllocator())
        #expect(raw.readBytes(length: ConnectionPreface.bytes.count) == ConnectionPreface.bytes)
        var decoder = FrameDecoder(maxPayloadSize: 1 << 20)
        #expect((try? decoder.decode(buffer: &raw))??.type == .hello)
        var c = C()
        let (first, early) = c.start()
        let (second, _) = c.start()
        #expect(early.isEmpty)
        #expect(c.output().isEmpty)
        let actions = c.serverHello()
        #expect(actions.isReady)
        #expect(actions.startedHandles == [first, second])
        #expect(c.output().filter { $0.type == .call }.map(\.callID) == [1, 2])
    }

    @Test("anything but HELLO or GOAWAY first is a protocol error: GOAWAY, close, and every call fails with it")
    func frameBeforeHello() {
        var c = C()
        let (call, _) = c.start()
        let actions = c.send(C.frame(.ping, payload: [UInt8](repeating: 0, count: 8)))
        #expect(actions.closes)
        #expect(C.goAway(c.output())?.code == .protocolError)
        let closed = c.machine.closed()
        #expect(closed.failures[call]?.code == .internal)
        #expect(closed.failures[call]?.message.contains("expected HELLO") == true)
    }

    @Test("a HELLO with a setting out of range is a protocol error: the connection never becomes ready")
    func badHello() {
        var c = C { $0.initialWindowSize = 1024 }
        let actions = c.serverHello()
        #expect(!actions.isReady)
        #expect(actions.closes)
        #expect(C.goAway(c.output())?.debugMessage.contains("out of range") == true)
        #expect(c.machine.closed().contains { if case .readyFailed(let error) = $0 { error.code == .internal } else { false } })
    }

    @Test("the server's max_concurrent_calls: a third call waits until one of two ends, then starts")
    func concurrencyLimit() {
        var c = C { $0.maxConcurrentCalls = 2 }
        c.serverHello()
        let (first, _) = c.start()
        c.start()
        let (third, waiting) = c.start()
        #expect(waiting.isEmpty)
        #expect(c.machine.openCalls == 3)
        _ = c.output()
        let actions = c.send(C.trailers(1, message: [1]))
        #expect(actions.succeeded[first] != nil)
        #expect(actions.startedHandles == [third])
        #expect(c.output().first { $0.type == .call }?.callID == 3)
    }

    // MARK: Responses

    @Test("a unary response: HEADERS, MESSAGE, TRAILERS give the message and both metadata")
    func unaryResponse() {
        var c = C()
        c.serverHello()
        let (call, _) = c.start()
        c.send(C.headers(1, ["x-initial": "a"]))
        c.send(C.message(1, [7, 8, 9]))
        let actions = c.send(C.trailers(1, metadata: ["x-trailing": "b"]))
        let response = actions.succeeded[call]
        #expect(response.map { Array($0.message.readableBytesView) } == [7, 8, 9])
        #expect(response?.initialMetadata["x-initial"] == "a")
        #expect(response?.trailingMetadata["x-trailing"] == "b")
        #expect(c.machine.calls.isEmpty)
    }

    @Test("a unary call answered with two messages, or none, fails INTERNAL")
    func unaryMessageCount() {
        var c = C()
        c.serverHello()
        let (twice, _) = c.start()
        let (never, _) = c.start()
        c.send(C.message(1, [1]), C.message(1, [2]))
        let both = c.send(C.trailers(1), C.trailers(2))
        #expect(both.failures[twice]?.message == "server sent more than one response message")
        #expect(both.failures[never]?.message == "server sent no response message")
        #expect(both.failures[never]?.code == .internal)
    }

    @Test("an error status arrives as RPCError with its reason and fields")
    func errorStatus() {
        var c = C()
        c.serverHello()
        let (call, _) = c.start()
        let head = TrailersHead(status: 9, message: "not enough coins", reason: "INSUFFICIENT_FUNDS", fields: ["balance": "40"])
        let error = c.send(C.trailersFrame(1, head)).failures[call]
        #expect(error?.code == .failedPrecondition)
        #expect(error?.details?.reason == "INSUFFICIENT_FUNDS")
        #expect(error?.details?.fields["balance"] == "40")
    }

    @Test("stream messages return to the server's window only when consumed, at half the window")
    func streamWindow() {
        var c = C { _ in } local: { $0.initialWindowSize = 64 * 1024 }
        c.serverHello()
        let (call, _) = c.start(kind: .serverStreaming)
        _ = c.output()
        let actions = c.send(C.message(1, [UInt8](repeating: 1, count: 20_000)), C.message(1, [UInt8](repeating: 2, count: 20_000)))
        #expect(actions.messages[call] == [20_000, 20_000])
        #expect(c.output().isEmpty)  // nothing consumed yet
        c.machine.acknowledge(call, bytes: 20_000)
        #expect(c.output().isEmpty)  // under half the window
        c.machine.acknowledge(call, bytes: 20_000)
        #expect(C.windowIncrements(c.output()) == [1: 40_000])
    }

    @Test("a server sending beyond the window it was given breaks the protocol")
    func windowOverrun() {
        var c = C { _ in } local: { $0.initialWindowSize = 64 * 1024; $0.maxFrameSize = 64 * 1024 }
        c.serverHello()
        c.start(kind: .serverStreaming)
        c.send(C.message(1, [UInt8](repeating: 1, count: 60_000)))
        let actions = c.send(C.message(1, [UInt8](repeating: 1, count: 6_000)))
        #expect(actions.closes)
        let goAway = C.goAway(c.output())
        #expect(goAway?.code == .protocolError)
        #expect(goAway?.debugMessage.contains("beyond its window") == true)
    }

    @Test("fragments are joined; a response over the client's limit cancels that call only (RESOURCE_EXHAUSTED)")
    func fragmentsAndLimit() {
        var c = C { _ in } local: { $0.maxMessageSize = 100 }
        c.serverHello()
        let (small, _) = c.start()
        let (large, _) = c.start()
        _ = c.output()
        c.send(C.message(1, [1, 2], flags: [.more]), C.message(1, [3]))
        let tooLarge = c.send(C.message(2, [UInt8](repeating: 0, count: 60), flags: [.more]), C.message(2, [UInt8](repeating: 0, count: 60)))
        #expect(tooLarge.failures[large]?.code == .resourceExhausted)
        #expect(c.output().contains { $0.type == .cancel && $0.callID == 2 })
        let done = c.send(C.trailers(1))
        #expect(done.succeeded[small].map { Array($0.message.readableBytesView) } == [1, 2, 3])
    }

    // MARK: Server control frames

    @Test("GOAWAY: calls above its last id fail as refused (safe to retry), lower ones finish, then the connection closes")
    func goAway() {
        var c = C()
        c.serverHello()
        let (kept, _) = c.start()
        let (refused, _) = c.start()
        let actions = c.send(C.goAwayFrame(lastCallID: 1, .noError))
        #expect(actions.failures[refused]?.wasRefused == true)
        #expect(actions.failures[kept] == nil)
        #expect(!actions.closes)
        #expect(c.machine.isDraining)
        let late = c.machine.start(kind: .unary, head: CallHead(method: "t.T/U"), message: ByteBuffer(), endStream: true, compress: false)
        #expect(late.1.failures[late.0]?.wasRefused == true)
        let finished = c.send(C.trailers(1, message: [1]))
        #expect(finished.succeeded[kept] != nil)
        #expect(finished.closes)
    }

    @Test("a GOAWAY for an error makes the close fail what is left with that error")
    func goAwayError() {
        var c = C()
        c.serverHello()
        let (call, _) = c.start()
        c.send(C.goAwayFrame(lastCallID: 1, .enhanceYourCalm, "slow down"))
        let error = c.machine.closed().failures[call]
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("slow down") == true)
    }

    @Test("CANCEL from the server: REFUSED is UNAVAILABLE and retryable, others CANCELLED with the server's text")
    func serverCancel() {
        var c = C()
        c.serverHello()
        let (refused, _) = c.start()
        let (cancelled, _) = c.start()
        let actions = c.send(
            C.frame(.cancel, 1, payload: [CancelReason.refused.rawValue]),
            C.frame(.cancel, 2, payload: [CancelReason.cancelled.rawValue] + Array("stop".utf8)))
        #expect(actions.failures[refused]?.code == .unavailable)
        #expect(actions.failures[refused]?.wasRefused == true)
        #expect(actions.failures[cancelled]?.code == .cancelled)
        #expect(actions.failures[cancelled]?.message == "stop")
    }

    @Test("a request larger than the server's window waits for its WINDOW; a WINDOW of 0 breaks the protocol")
    func requestWindow() throws {
        var c = C { $0.initialWindowSize = 64 * 1024 }
        c.serverHello()
        let (call, _) = c.start(kind: .clientStreaming, message: nil, endStream: false)
        #expect(try c.machine.writeMessage(call, ByteBuffer(repeating: 1, count: 100_000), compress: false) == 1)
        let sent = c.output().filter { $0.type == .message }.map(\.payload.readableBytes).reduce(0, +)
        #expect(sent == 64 * 1024)
        #expect(c.machine.queue.hasPending(callID: 1))
        c.send(C.window(1, 64 * 1024))
        let rest = c.output().filter { $0.type == .message }.map(\.payload.readableBytes).reduce(0, +)
        #expect(sent + rest == 100_000)
        #expect(c.send(C.window(1, 0)).closes)
        #expect(C.goAway(c.output())?.code == .protocolError)
    }

    @Test("PING is answered with its payload; our PING's PONG is matched, an unknown PONG ignored")
    func pings() {
        var c = C()
        c.serverHello()
        c.send(C.frame(.ping, payload: [1, 2, 3, 4, 5, 6, 7, 8]))
        #expect(c.output().first { $0.type == .pong }.map { Array($0.payload.readableBytesView) } == [1, 2, 3, 4, 5, 6, 7, 8])
        let id = c.machine.ping()
        #expect(id != nil)
        let ping = c.output().first { $0.type == .ping }
        #expect(c.send(C.frame(.pong, payload: [UInt8](repeating: 9, count: 8))).isEmpty)
        let pong = c.send(C.frame(.pong, payload: ping.map { Array($0.payload.readableBytesView) } ?? []))
        #expect(pong.pongs == [id])
    }

    @Test("a PING from the server must carry 8 bytes: anything else breaks the protocol, not the framing")
    func pingLength() {
        var c = C()
        c.serverHello()
        #expect(c.send(C.frame(.ping, payload: [])).closes)
        #expect(C.goAway(c.output())?.debugMessage.contains("PING must carry 8 bytes") == true)
    }

    @Test("unknown frame types: ignored when IGNORABLE, a protocol error otherwise; CALL and HALF_CLOSE from a server too")
    func unknownFrames() {
        var ignorable = C()
        ignorable.serverHello()
        #expect(ignorable.send(C.frame(FrameType(rawValue: 0x7e), flags: [.ignorable], payload: [1])).isEmpty)
        for frame in [C.frame(FrameType(rawValue: 0x7e), payload: [1]), C.frame(.halfClose, 1), C.frame(.call, 1)] {
            var c = C()
            c.serverHello()
            c.start()
            #expect(c.send(frame).closes)
            #expect(C.goAway(c.output()) != nil)
        }
    }

    @Test("frames split at every byte give the same result as whole frames")
    func byteAtATime() {
        var c = C()
        var bytes = ByteBuffer()
        FrameWriter.writeHello(ConnectionSettings().hello, into: &bytes)
        let (call, _) = c.start()
        for frame in [C.headers(1, ["k": "v"]), C.message(1, [4, 5]), C.trailers(1)] { bytes.writeFrame(frame) }
        var actions: [ClientConnectionAction] = []
        while let byte = bytes.readSlice(length: 1) { actions += c.machine.receive(byte) }
        #expect(actions.succeeded[call].map { Array($0.message.readableBytesView) } == [4, 5])
    }

    // MARK: The caller's side

    @Test("refused before sending: metadata over the server's limit (INVALID_ARGUMENT), a request over its message limit (RESOURCE_EXHAUSTED)")
    func refusedLocally() {
        var c = C { $0.maxMetadataSize = 1024; $0.maxMessageSize = 10 }
        c.serverHello()
        let (metadata, a) = c.machine.start(
            kind: .unary, head: CallHead(method: "t.T/U", metadata: ["k": String(repeating: "v", count: 2000)]),
            message: ByteBuffer(), endStream: true, compress: false)
        let (message, b) = c.start(message: ByteBuffer(repeating: 0, count: 11))
        #expect(a.failures[metadata]?.code == .invalidArgument)
        #expect(b.failures[message]?.code == .resourceExhausted)
        #expect(c.output().isEmpty)
    }

    @Test("call ids never wrap: the last id is used, then the connection refuses new calls and says it is draining")
    func callIDsRunOut() {
        var c = C()
        c.serverHello()
        c.machine.nextCallID = UInt32.max - 1
        let (last, a) = c.start()
        #expect(a.startedHandles == [last])
        #expect(c.machine.isDraining)
        let (refused, b) = c.start()
        #expect(b.failures[refused]?.wasRefused == true)
    }

    @Test("cancelling: a waiting call fails without a frame; an open one sends CANCEL and drops its queued frames")
    func cancel() {
        var c = C { $0.maxConcurrentCalls = 1; $0.initialWindowSize = 64 * 1024 }
        c.serverHello()
        let (open, _) = c.start(kind: .clientStreaming, message: nil, endStream: false)
        let (waiting, _) = c.start()
        let dropped = c.machine.cancel(waiting, reason: .cancelled, error: RPCError(code: .cancelled, message: "gone"))
        #expect(dropped.failures[waiting]?.code == .cancelled)
        _ = c.output()
        _ = try? c.machine.writeMessage(open, ByteBuffer(repeating: 1, count: 200_000), compress: false)
        _ = c.output()
        let cancelled = c.machine.cancel(open, reason: .deadlineExceeded, error: RPCError(code: .deadlineExceeded, message: "late"))
        #expect(cancelled.failures[open]?.code == .deadlineExceeded)
        c.send(C.window(1, 1_000_000))
        let after = c.output()
        #expect(after.contains { $0.type == .cancel && $0.callID == 1 })
        #expect(!after.contains { $0.type == .message })
        #expect(c.machine.calls.isEmpty)
    }

    @Test("HALF_CLOSE once; no message after it")
    func halfClose() throws {
        var c = C()
        c.serverHello()
        let (call, _) = c.start(kind: .clientStreaming, message: nil, endStream: false)
        _ = try c.machine.writeMessage(call, ByteBuffer(bytes: [1]), compress: false)
        c.machine.halfClose(call)
        c.machine.halfClose(call)
        #expect(c.output().filter { $0.type == .halfClose }.count == 1)
        #expect(try c.machine.writeMessage(call, ByteBuffer(bytes: [2]), compress: false) == nil)
    }

    @Test("closing: GOAWAY(NO_ERROR) then close; when the socket is gone every call fails UNAVAILABLE")
    func close() {
        var c = C()
        c.serverHello()
        let (call, _) = c.start()
        #expect(c.machine.close().closes)
        #expect(C.goAway(c.output())?.code == .noError)
        let closed = c.machine.closed()
        #expect(closed.failures[call]?.code == .unavailable)
        #expect(closed.contains { if case .connectionFailed = $0 { true } else { false } })
        #expect(c.machine.closed().isEmpty)
    }
}
