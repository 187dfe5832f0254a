import NIOCore
import Testing

@testable import PassionWire

@Suite("Outbound fairness")
struct OutboundQueueTests {
    private func frames(_ buffer: ByteBuffer) throws -> [Frame] {
        let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxPayloadSize: 1 << 20))
        var frames: [Frame] = []
        try processor.process(buffer: buffer) { frames.append($0) }
        return frames
    }

    private var writer: FrameWriter {
        var settings = ConnectionSettings()
        settings.maxFrameSize = 16 * 1024
        return FrameWriter(settings: NegotiatedSettings(local: settings, peer: settings))
    }

    @Test("a small response written after a large one goes out before the large one's remainder")
    func smallOvertakesLarge() throws {
        var queue = OutboundQueue()
        let writer = self.writer
        queue.append(callID: 1) { writer.writeMessage(callID: 1, message: ByteBuffer(repeating: 1, count: 100_000), endStream: false, compress: false, into: &$0) }
        queue.append(callID: 1) { writer.writeTrailers(callID: 1, head: TrailersHead(status: 0), message: nil, compress: false, into: &$0) }
        queue.append(callID: 3) { writer.writeTrailers(callID: 3, head: TrailersHead(status: 0), message: ByteBuffer(bytes: [1]), compress: false, into: &$0) }
        #expect(queue.hasPending)
        var sent: [Frame] = try frames(queue.takeOutput(allocator: ByteBufferAllocator()))
        #expect(sent.map(\.callID) == [1, 3], "first fragment of call 1, then call 3 complete")
        while queue.hasPending {
            queue.release(upTo: 20 * 1024)
            sent += try frames(queue.takeOutput(allocator: ByteBufferAllocator()))
        }
        let call1 = sent.filter { $0.callID == 1 }
        #expect(call1.count == 8)
        #expect(call1.dropLast().allSatisfy { $0.type == .message })
        #expect(call1.last?.type == .trailers, "trailers never overtake their own call's fragments")
    }

    @Test("two large messages interleave frame by frame")
    func roundRobin() throws {
        var queue = OutboundQueue()
        let writer = self.writer
        for id: UInt32 in [1, 3] {
            queue.append(callID: id) { writer.writeMessage(callID: id, message: ByteBuffer(repeating: 2, count: 48 * 1024), endStream: false, compress: false, into: &$0) }
        }
        queue.release(upTo: .max)
        let order = try frames(queue.output).map(\.callID)
        // 48 KiB in 16 KiB frames is three frames each, alternating.
        #expect(order == [1, 3, 1, 3, 1, 3])
    }

    @Test("a discarded call's waiting frames are never sent")
    func discard() throws {
        var queue = OutboundQueue()
        let writer = self.writer
        queue.append(callID: 5) { writer.writeMessage(callID: 5, message: ByteBuffer(repeating: 3, count: 64 * 1024), endStream: false, compress: false, into: &$0) }
        queue.discard(callID: 5)
        queue.release(upTo: .max)
        #expect(queue.hasPending == false)
        #expect(try frames(queue.output).count == 1)
    }
}

@Suite("Flow control windows")
struct FlowControlTests {
    private var writer: FrameWriter {
        var settings = ConnectionSettings()
        settings.maxFrameSize = 16 * 1024
        return FrameWriter(settings: NegotiatedSettings(local: settings, peer: settings))
    }

    private func frames(_ buffer: ByteBuffer) throws -> [Frame] {
        let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxPayloadSize: 1 << 20))
        var frames: [Frame] = []
        try processor.process(buffer: buffer) { frames.append($0) }
        return frames
    }

    @Test("a call out of credit waits; other calls go on; a grant releases it")
    func creditBlocksOnlyItsCall() throws {
        var queue = OutboundQueue(initialWindow: 64 * 1024)
        let writer = self.writer
        // 100 KB on call 1: four 16 KiB frames fit the 64 KiB window, the rest waits.
        queue.append(callID: 1) { writer.writeMessage(callID: 1, message: ByteBuffer(repeating: 1, count: 100_000), endStream: false, compress: false, into: &$0) }
        queue.append(callID: 3) { writer.writeMessage(callID: 3, message: ByteBuffer(repeating: 3, count: 100), endStream: false, compress: false, into: &$0) }
        queue.release(upTo: .max)
        let sent = try frames(queue.takeOutput(allocator: ByteBufferAllocator()))
        #expect(sent.filter { $0.callID == 1 }.count == 4)
        #expect(sent.filter { $0.callID == 3 }.count == 1)
        #expect(queue.hasPending(callID: 1) && !queue.hasPending(callID: 3))

        queue.grant(callID: 1, increment: 64 * 1024)
        queue.release(upTo: .max)
        let rest = try frames(queue.takeOutput(allocator: ByteBufferAllocator()))
        #expect(rest.count == 3)
        #expect(rest.last?.flags.contains(.more) == false)
        #expect(!queue.hasPending)
    }

    @Test("non-MESSAGE frames need no credit but keep their call's order")
    func trailersWaitBehindTheirCallsMessages() throws {
        var queue = OutboundQueue(initialWindow: 64 * 1024)
        let writer = self.writer
        queue.append(callID: 1) { writer.writeMessage(callID: 1, message: ByteBuffer(repeating: 1, count: 80 * 1024), endStream: false, compress: false, into: &$0) }
        queue.append(callID: 1) { writer.writeTrailers(callID: 1, head: TrailersHead(status: 0), message: nil, compress: false, into: &$0) }
        queue.release(upTo: .max)
        #expect(try frames(queue.takeOutput(allocator: ByteBufferAllocator())).allSatisfy { $0.type == .message })
        queue.grant(callID: 1, increment: 16 * 1024)
        queue.release(upTo: .max)
        #expect(try frames(queue.takeOutput(allocator: ByteBufferAllocator())).map(\.type) == [.message, .trailers])
    }

    @Test("a receiver grants half a window at a time and refuses bytes beyond the window")
    func inboundWindows() throws {
        var windows = InboundWindows(initialWindow: 64 * 1024)
        try windows.received(callID: 1, bytes: 40 * 1024)
        #expect(windows.consumed(callID: 1, bytes: 20 * 1024) == nil)
        #expect(windows.consumed(callID: 1, bytes: 20 * 1024) == UInt32(40 * 1024))
        try windows.received(callID: 1, bytes: 64 * 1024)
        #expect {
            try windows.received(callID: 1, bytes: 1)
        } throws: { ($0 as? WireError)?.kind == .flowControl }
    }
}
