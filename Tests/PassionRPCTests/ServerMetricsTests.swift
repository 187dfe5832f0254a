import MetricsTestKit
import NIOCore
@testable import PassionRPC
@testable import PassionRPCServer
import PassionWire
import Testing

/// What the connection machine records, event by event on the harness's clock: a call's
/// status and duration, the status a client's cancel or a closed connection leaves, refusals
/// before routing, and GOAWAY reasons.
@Suite("Server metrics")
struct ServerMetricsTests {
    typealias H = MachineHarness

    private static let method = [("service", "t.T"), ("method", "Unary")]

    private func finished(_ metrics: TestMetrics, _ code: String) -> Int64 {
        metrics.counterTotal(label: "passion_rpc_calls_finished_total", dimensions: Self.method + [("code", code)])
    }

    @Test("a unary call: started, one message each way with its bytes, OK, and the time from CALL to its TRAILERS queued")
    func unaryCall() throws {
        let metrics = TestMetrics()
        var h = H(metrics: ServerMetrics(factory: metrics))
        h.handshake()
        h.send(H.call(1, message: [1, 2, 3], endStream: true))
        #expect(try metrics.expectCounter("passion_rpc_calls_started_total", Self.method).totalValue == 1)
        #expect(try metrics.expectMeter("passion_rpc_calls_in_flight").lastValue == 1)
        h.advance(.milliseconds(7))
        _ = h.machine.handlerFinished(1, H.outcome(ByteBuffer(bytes: [9, 9, 9, 9, 9])), now: h.now)
        _ = h.output()
        #expect(finished(metrics, "OK") == 1)
        #expect(try metrics.expectTimer("passion_rpc_call_duration_seconds", Self.method).values == [7_000_000])
        #expect(try metrics.expectMeter("passion_rpc_calls_in_flight").lastValue == 0)
        #expect(try metrics.expectCounter("passion_rpc_messages_received_total", Self.method).totalValue == 1)
        #expect(try metrics.expectCounter("passion_rpc_message_bytes_received_total", Self.method).totalValue == 3)
        #expect(try metrics.expectCounter("passion_rpc_messages_sent_total", Self.method).totalValue == 1)
        #expect(try metrics.expectCounter("passion_rpc_message_bytes_sent_total", Self.method).totalValue == 5)
    }

    @Test("a handler's error is the code counted; a client's CANCEL counts CANCELLED even when the handler ends later")
    func failedAndCancelled() {
        let metrics = TestMetrics()
        var h = H(metrics: ServerMetrics(factory: metrics))
        h.handshake()
        h.send(H.call(1, message: [], endStream: true), H.call(3, message: [], endStream: true))
        _ = h.machine.handlerFinished(1, H.outcome(error: RPCError(code: .notFound, message: "no")), now: h.now)
        h.send(H.frame(.cancel, 3))
        _ = h.machine.handlerFinished(3, H.outcome(error: RPCError(code: .internal, message: "late")), now: h.now)
        _ = h.output()
        #expect(finished(metrics, "NOT_FOUND") == 1)
        #expect(finished(metrics, "CANCELLED") == 1)
        #expect(finished(metrics, "INTERNAL") == 0)
    }

    @Test("a deadline counts DEADLINE_EXCEEDED; a connection closed under a running call counts UNAVAILABLE, once")
    func deadlineAndClosed() {
        let metrics = TestMetrics()
        var h = H(metrics: ServerMetrics(factory: metrics))
        h.handshake()
        h.send(H.call(1, message: [], endStream: true, timeoutMicroseconds: 1000))
        h.send(H.call(3, message: [], endStream: true))
        h.advance(.milliseconds(1))
        _ = h.output()
        _ = h.machine.handlerFinished(1, H.outcome(error: RPCError(code: .cancelled, message: "task cancelled")), now: h.now)
        _ = h.output()
        #expect(finished(metrics, "DEADLINE_EXCEEDED") == 1)
        _ = h.machine.inputClosed(now: h.now)
        _ = h.machine.handlerFinished(3, H.outcome(ByteBuffer()), now: h.now)
        #expect(finished(metrics, "UNAVAILABLE") == 1)
        #expect(finished(metrics, "OK") == 0)
        #expect(metrics.counterTotal(label: "passion_rpc_calls_finished_total") == 2)
    }

    @Test("a response stuck behind the client's window at its deadline counts DEADLINE_EXCEEDED, not the OK it had queued")
    func stuckResponseDeadline() {
        let metrics = TestMetrics()
        var client = ConnectionSettings()
        client.initialWindowSize = 65_536
        var h = H(client: client, metrics: ServerMetrics(factory: metrics))
        h.handshake()
        h.send(H.call(1, message: [], endStream: true, timeoutMicroseconds: 1_000_000))
        _ = h.machine.handlerFinished(1, H.outcome(ByteBuffer(repeating: 7, count: 500_000)), now: h.now)
        _ = h.output()
        #expect(finished(metrics, "OK") == 0)  // its last frames wait for window
        h.advance(.seconds(1))
        _ = h.output()
        #expect(finished(metrics, "DEADLINE_EXCEEDED") == 1)
        #expect(finished(metrics, "OK") == 0)
    }

    @Test("every protocol error has its own snake-case label")
    func goAwayLabels() {
        let kinds: [WireError.Kind] = [
            .badPreface, .frameTooLarge, .malformedFrame, .unexpectedFrame, .unknownFrameType, .callIDReuse, .messageTooLarge,
            .metadataTooLarge, .decompressionFailed, .compressionNotNegotiated, .tooManyCalls, .enhanceYourCalm, .flowControl,
        ]
        let labels = kinds.map(\.label)
        #expect(Set(labels).count == kinds.count)
        #expect(labels.allSatisfy { $0.allSatisfy { $0 == "_" || ("a"..."z").contains($0) } })
        #expect(WireError.Kind.callIDReuse.label == "call_id_reuse")
    }

    @Test("refused before routing: unknown method, too many calls, draining; GOAWAYs by reason")
    func refusals() {
        let metrics = TestMetrics()
        var h = H(metrics: ServerMetrics(factory: metrics)) { $0.settings.maxConcurrentCalls = 1 }
        h.handshake()
        h.send(H.call(1, MethodDescriptor(service: "t.T", method: "Nope", kind: .unary), message: [], endStream: true))
        h.send(H.call(3, message: [], endStream: true), H.call(5, message: [], endStream: true))
        _ = h.machine.shutdown(now: h.now)
        h.send(H.call(7, message: [], endStream: true))
        let refused = { (reason: String) in
            metrics.counterTotal(label: "passion_rpc_calls_refused_total", dimensions: [("reason", reason)])
        }
        #expect(refused("unimplemented") == 1)
        #expect(refused("concurrency") == 1)
        #expect(refused("draining") == 1)
        #expect(metrics.counterTotal(label: "passion_goaways_sent_total", dimensions: [("reason", "shutdown")]) == 1)
        #expect(metrics.counterTotal(label: "passion_rpc_calls_started_total") == 1)

        var bad = H(metrics: ServerMetrics(factory: metrics))
        bad.handshake()
        bad.send(H.frame(.halfClose, 99))
        #expect(metrics.counterTotal(label: "passion_goaways_sent_total", dimensions: [("reason", "unexpected_frame")]) == 1)
    }
}
