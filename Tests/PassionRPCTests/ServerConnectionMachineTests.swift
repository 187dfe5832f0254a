import NIOCore
@testable import PassionRPC
@testable import PassionRPCServer
import PassionWire
import Testing

/// The server connection's state machine, event by event on a clock the test moves: timers,
/// flow control, authentication at CALL, memory bounds, and the spec's bad-input table.
@Suite("Server connection state machine")
struct ServerConnectionMachineTests {
    typealias H = MachineHarness

    // MARK: Timers

    @Test("handshake: closed 10 s after accept without a HELLO; a HELLO in time stops the timer")
    func handshakeTimeout() {
        var silent = H()
        #expect(silent.advance(.milliseconds(9_999)).isEmpty)
        #expect(silent.advance(.milliseconds(1)).closes)
        var prompt = H()
        prompt.advance(.seconds(9))
        prompt.handshake()
        #expect(!prompt.advance(.seconds(2)).closes)
        #expect(prompt.machine.phase == .ready)
    }

    @Test("idle: GOAWAY(NO_ERROR, idle) and close after 5 minutes without calls, counted from the last call's end")
    func idleTimeout() {
        var h = H { $0.keepaliveInterval = nil }
        h.handshake()
        h.advance(.seconds(200))
        h.send(H.call(1, message: [], endStream: true))
        h.advance(.seconds(200))  // a call is open: not idle
        h.machine.handlerFinished(1, H.outcome(ByteBuffer()), now: h.now).forEach { _ in }
        _ = h.output()
        #expect(!h.advance(.seconds(299)).closes)
        let actions = h.advance(.seconds(1))
        #expect(actions.closes)
        #expect(H.goAway(h.output())?.debugMessage == "idle")
    }

    @Test("keepalive: a PING after 60 s of silence; closed 20 s later without a PONG; a PONG keeps it")
    func keepalive() {
        var h = H { $0.idleTimeout = nil }
        h.handshake()
        h.advance(.seconds(60))
        let ping = h.output().first { $0.type == .ping }
        #expect(ping != nil)
        h.send(H.frame(.pong, payload: Array(ping?.payload.readableBytesView ?? ByteBuffer().readableBytesView)))
        #expect(!h.advance(.seconds(21)).closes)
        h.advance(.seconds(40))  // 61 s after the PONG: the next PING
        #expect(h.output().contains { $0.type == .ping })
        #expect(!h.advance(.seconds(19)).closes)
        #expect(h.advance(.seconds(1)).closes)
    }

    @Test("shutdown: GOAWAY at once, streams are told, calls finish in the grace period, then the rest is cancelled")
    func shutdown() {
        var h = H()
        h.handshake()
        h.send(H.call(1, message: [], endStream: true))
        h.send(H.call(3, H.serverStream, message: [], endStream: true))
        let actions = h.machine.shutdown(now: h.now)
        #expect(actions.shutdown == [3])
        let goAway = H.goAway(h.output())
        #expect(goAway?.code == .noError && goAway?.lastCallID == 3)
        // A CALL after the GOAWAY is refused without a token.
        h.send(H.call(5, message: [], endStream: true))
        #expect(h.output().contains { $0.type == .cancel && $0.callID == 5 })
        _ = h.machine.handlerFinished(1, H.outcome(ByteBuffer()), now: h.now)
        #expect(!h.advance(.seconds(29)).closes)
        let end = h.advance(.seconds(1))
        #expect(end.closes && end.cancelled[3] == .unavailable)
    }

    @Test("a call's deadline: TRAILERS DEADLINE_EXCEEDED and its handler cancelled")
    func deadline() {
        var h = H()
        h.handshake()
        h.send(H.call(1, message: [], endStream: true, timeoutMicroseconds: 500_000))
        #expect(h.advance(.milliseconds(499)).cancelled.isEmpty)
        #expect(h.advance(.milliseconds(1)).cancelled[1] == .deadlineExceeded)
        let trailers = h.output().first { $0.type == .trailers }.flatMap(H.trailers)
        #expect(trailers?.status == StatusCode.deadlineExceeded.rawValue)
    }

    // MARK: Calls and responses

    @Test("a unary call: started at CALL, its request delivered at END_STREAM, its response inline in TRAILERS")
    func unary() {
        var h = H()
        h.handshake()
        let actions = h.send(H.call(1, message: [1, 2], endStream: true))
        #expect(actions.started == [1] && actions.delivered == [1])
        _ = h.machine.authenticated(1)
        _ = h.machine.handlerFinished(1, H.outcome(ByteBuffer(bytes: [9])), now: h.now)
        let frames = h.output()
        #expect(frames.map(\.type) == [.trailers] && frames.first?.flags.contains(.hasMessage) == true)
        #expect(h.machine.calls.isEmpty)
    }

    @Test("a response larger than the client's window goes out as WINDOWs arrive, after its handler returned")
    func largeResponseAfterHandler() {
        var client = ConnectionSettings()
        client.initialWindowSize = 65_536
        var h = H(client: client)
        h.handshake()
        h.send(H.call(1, message: [], endStream: true))
        _ = h.machine.authenticated(1)
        _ = h.machine.handlerFinished(1, H.outcome(ByteBuffer(repeating: 7, count: 1_048_573)), now: h.now)
        var received = h.output().filter { $0.type == .message }.reduce(0) { $0 + $1.payload.readableBytes }
        #expect(received == 65_536)
        #expect(h.machine.calls[1] != nil, "the call stays while its response waits for window")
        while h.machine.calls[1] != nil {
            h.send(H.window(1, 65_536))
            received += h.output().filter { $0.type == .message }.reduce(0) { $0 + $1.payload.readableBytes }
        }
        #expect(received == 1_048_573)
    }

    @Test("a response stuck behind a client that grants no window ends at the deadline, its frames dropped")
    func stuckResponseDeadline() {
        var client = ConnectionSettings()
        client.initialWindowSize = 65_536
        var h = H(client: client)
        h.handshake()
        h.send(H.call(1, message: [], endStream: true, timeoutMicroseconds: 1_000_000))
        _ = h.machine.handlerFinished(1, H.outcome(ByteBuffer(repeating: 7, count: 500_000)), now: h.now)
        _ = h.output()
        h.advance(.seconds(1))
        let frames = h.output()
        #expect(frames.map(\.type) == [.trailers])
        #expect(frames.first.flatMap(H.trailers)?.status == StatusCode.deadlineExceeded.rawValue)
        #expect(h.machine.calls.isEmpty && h.machine.queue.bufferedBytes == 0)
    }

    @Test("cardinality: a unary call with two messages or none is UNIMPLEMENTED")
    func cardinality() {
        var h = H()
        h.handshake()
        h.send(H.call(1, message: [1]), H.message(1, count: 1, flags: .endStream))
        h.send(H.call(3, endStream: true))
        let statuses = h.output().compactMap { H.trailers($0)?.status }
        #expect(statuses == [StatusCode.unimplemented.rawValue, StatusCode.unimplemented.rawValue])
    }

    @Test("a CANCEL ends the call for both sides: no TRAILERS, the handler cancelled, the slot held until it returns")
    func cancel() {
        var client = ConnectionSettings()
        client.maxConcurrentCalls = 1
        var h = H { $0.settings.maxConcurrentCalls = 1 }
        h.client = client
        h.handshake()
        h.send(H.call(1, message: [], endStream: true))
        let actions = h.send(H.frame(.cancel, 1))  // an empty payload cancels too
        #expect(actions.cancelled[1] == .cancelled)
        h.send(H.call(3, message: [], endStream: true))
        #expect(h.output().contains { $0.type == .cancel && $0.callID == 3 }, "the slot is still taken")
        _ = h.machine.handlerFinished(1, H.outcome(error: RPCError(code: .cancelled, message: "")), now: h.now)
        #expect(!h.output().contains { $0.type == .trailers })
        #expect(h.send(H.call(5, message: [], endStream: true)).started == [5])
    }
}
