import NIOCore
@testable import PassionRPC
@testable import PassionRPCServer
import PassionWire
import Testing

/// What the server's state machine does with a client's input, event by event: authentication
/// at CALL, memory bounds, slow peers, and the cases WIRE.md settles.
@Suite("Server connection state machine: input")
struct ServerConnectionInputTests {
    typealias H = MachineHarness

    static func windows(_ frames: [Frame], call: UInt32) -> Int {
        frames.filter { $0.type == .window && $0.callID == call }.reduce(0) { total, frame in
            var payload = frame.payload
            return total + Int(payload.readInteger(as: UInt32.self) ?? 0)
        }
    }

    @Test("request bytes of a call not yet authenticated are not returned to the window; they are once it is")
    func windowHeldUntilAuthenticated() {
        var h = H()
        h.handshake()
        h.send(H.call(1, H.clientStream))
        // 900 KiB of fragments of one message: returned on receipt once authenticated, not before.
        for _ in 0..<15 { h.send(H.message(1, count: 61_440, flags: .more)) }
        #expect(Self.windows(h.output(), call: 1) == 0)
        _ = h.machine.authenticated(1)
        #expect(Self.windows(h.output(), call: 1) == 15 * 61_440)
    }

    @Test("a refused call's request is dropped: later frames for it are ignored and hold nothing")
    func refusedCallHoldsNothing() {
        var h = H()
        h.handshake()
        h.send(H.call(1, H.clientStream), H.message(1, count: 60_000, flags: .more))
        #expect(h.machine.bufferedRequestBytes == 60_000)
        let refusal = RPCError(code: .unauthenticated, message: "no", details: ErrorDetails(reason: "CREDENTIAL_REQUIRED"))
        _ = h.machine.handlerFinished(1, H.outcome(error: refusal), now: h.now)
        #expect(h.output().compactMap(H.trailers).map(\.status) == [StatusCode.unauthenticated.rawValue])
        #expect(h.machine.bufferedRequestBytes == 0)
        h.send(H.message(1, count: 60_000, flags: .more))
        #expect(h.machine.bufferedRequestBytes == 0 && h.machine.phase == .ready)
    }

    @Test("a connection holding more request data than its limit gets GOAWAY(ENHANCE_YOUR_CALM)")
    func connectionMemoryLimit() {
        var h = H { $0.maxBufferedRequestBytes = 1_000_000 }
        h.handshake()
        for id in stride(from: UInt32(1), to: 40, by: 2) {
            h.send(H.call(id, H.clientStream))
            h.send(H.message(id, count: 60_000, flags: .more))
            if h.machine.phase != .ready { break }
        }
        #expect(h.machine.phase == .closing)
        #expect(H.goAway(h.output())?.code == .enhanceYourCalm)
        #expect(h.machine.bufferedRequestBytes <= 1_000_000 + 60_000)
    }

    @Test("the server's memory budget: a call that would go beyond it ends RESOURCE_EXHAUSTED; closing gives it all back")
    func serverBudget() {
        let budget = ServerMemoryBudget(limit: 200_000)
        var h = H(budget: budget)
        h.handshake()
        for id: UInt32 in [1, 3, 5, 7] {
            h.send(H.call(id, H.clientStream), H.message(id, count: 60_000, flags: .more))
        }
        let statuses = Dictionary(h.output().compactMap { frame in H.trailers(frame).map { (frame.callID, $0.status) } }, uniquingKeysWith: { a, _ in a })
        #expect(statuses == [7: StatusCode.resourceExhausted.rawValue])
        #expect(budget.inUse == 180_000)
        _ = h.machine.inputClosed(now: .now)
        #expect(budget.inUse == 0)
    }

    @Test("a peer trickling an unfinished frame is closed: at least 1 KiB per 10 s")
    func slowPeer() {
        var h = H()
        h.handshake()
        h.send(H.call(1, H.clientStream))
        var partial = ByteBuffer()
        partial.writeFrame(H.message(1, count: 5_000))
        var slice = partial.readSlice(length: 20) ?? ByteBuffer()
        h.send(slice)
        h.advance(.seconds(5))
        slice = partial.readSlice(length: 1) ?? ByteBuffer()
        h.send(slice)
        #expect(h.machine.phase == .ready)
        h.advance(.seconds(5))
        #expect(h.machine.phase == .closing)
        #expect(H.goAway(h.output())?.code == .enhanceYourCalm)
        // A peer that keeps up is left alone.
        var steady = H()
        steady.handshake()
        steady.send(H.call(1, H.clientStream))
        var big = ByteBuffer()
        big.writeFrame(H.message(1, count: 60_000))
        for _ in 0..<20 {
            steady.advance(.seconds(5))
            if let chunk = big.readSlice(length: min(2_000, big.readableBytes)) { steady.send(chunk) }
        }
        #expect(steady.machine.phase == .ready)
    }

    @Test("queued responses past the limit pause reading until half of them went out")
    func outputBackPressure() {
        var h = H { $0.maxQueuedResponseBytes = 200_000 }
        h.handshake()
        h.send(H.call(1, H.serverStream, message: [], endStream: true))
        var paused = false
        for _ in 0..<10 {
            let (_, actions) = h.machine.writeResponse(1, message: ByteBuffer(repeating: 1, count: 50_000), compress: false, initialMetadata: Metadata())
            if actions.reading == false { paused = true }
        }
        #expect(paused && !h.machine.isReading)
        var resumed = false
        while h.machine.queue.hasPending || h.machine.queue.output.readableBytes > 0 {
            let (_, actions) = h.machine.takeOutput(limit: 100_000, now: h.now)
            if actions.reading == true { resumed = true }
            if !h.machine.queue.hasPending { break }
            h.send(H.window(1, 100_000))
        }
        #expect(resumed && h.machine.isReading)
    }

    @Test("GOAWAY for an error: input is then discarded; the connection closes when the peer does or after 1 s")
    func drainAfterError() {
        var h = H()
        h.handshake()
        h.send(H.frame(.goAway, payload: [0, 0]))  // shorter than 5 bytes
        #expect(H.goAway(h.output())?.code == .protocolError)
        #expect(h.send(H.call(1, message: [], endStream: true)).isEmpty)
        #expect(!h.advance(.milliseconds(999)).closes)
        #expect(h.advance(.milliseconds(1)).closes)
        var early = H()
        early.handshake()
        early.send(ByteBuffer(bytes: [0, 0, 0, 0, 0x7F, 0, 0, 0, 0, 0]))
        #expect(early.machine.phase == .closing)
        #expect(early.machine.inputClosed(now: .now).closes)
    }

    /// The cases WIRE.md settles, each with the answer it now gives.
    @Test("spec cases: WINDOW for a call never started, a skipped id, HALF_CLOSE with a payload, CANCEL with any reason, a client GOAWAY of any code")
    func specCases() {
        var h = H()
        h.handshake()
        h.send(H.call(5, message: [], endStream: true))
        // An id skipped below the highest is indistinguishable from an ended call: ignored.
        h.send(H.frame(.cancel, 3, payload: [3]), H.window(3, 100), H.message(3, count: 10))
        #expect(h.machine.phase == .ready)
        // A CANCEL with a server-only reason, or none, cancels like any other.
        #expect(h.send(H.frame(.cancel, 5, payload: [3])).cancelled[5] == .cancelled)
        // A client GOAWAY with an unknown code: no more calls; the connection drains.
        h.send(H.frame(.goAway, payload: [0, 0, 0, 0, 0x42]))
        #expect(h.machine.phase == .draining)
        for bad in [H.window(9, 100), H.frame(.halfClose, 5, payload: [1])] {
            var fresh = H()
            fresh.handshake()
            fresh.send(H.call(5, H.clientStream))
            fresh.send(bad)
            #expect(H.goAway(fresh.output())?.code == .protocolError, "\(bad.type)")
        }
    }
}
