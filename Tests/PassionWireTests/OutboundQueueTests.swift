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

@Suite("Flow control at the minimum window (WIRE.md 10.7)")
struct WindowSplitTests {
    private func frames(_ buffer: ByteBuffer) throws -> [Frame] {
        let processor = NIOSingleStepByteToMessageProcessor(FrameDecoder(maxPayloadSize: 1 << 24))
        var frames: [Frame] = []
        try processor.process(buffer: buffer) { frames.append($0) }
        return frames
    }

    /// A sender and a receiver that consumes every message at once, as the reference receiver
    /// announces: a WINDOW once half the window was returned. Returns the payload delivered.
    private func transfer(messages: [Int], window: Int, frameSize: Int, compress: Bool = false) throws -> [Int] {
        var peer = ConnectionSettings()
        peer.maxFrameSize = frameSize
        peer.initialWindowSize = window
        let writer = FrameWriter(settings: NegotiatedSettings(local: ConnectionSettings(), peer: peer))
        var queue = OutboundQueue(initialWindow: window)
        var receiver = InboundWindows(initialWindow: window)
        var assembler: [UInt8] = []
        var delivered: [Int] = []
        var pendingMessages = messages
        var rounds = 0
        while !pendingMessages.isEmpty || queue.hasPending {
            rounds += 1
            #expect(rounds < 10_000, "no progress: deadlock")
            if rounds >= 10_000 { break }
            if let next = pendingMessages.first, !queue.hasPending(callID: 1) {
                pendingMessages.removeFirst()
                queue.append(callID: 1) {
                    writer.writeMessage(callID: 1, message: ByteBuffer(repeating: 7, count: next), endStream: false, compress: compress, into: &$0)
                }
            }
            queue.release(upTo: .max)
            for frame in try frames(queue.takeOutput(allocator: ByteBufferAllocator())) {
                #expect(frame.payload.readableBytes <= frameSize)
                try receiver.received(callID: 1, bytes: frame.payload.readableBytes)
                assembler += Array(frame.payload.readableBytesView)
                if !frame.flags.contains(.more) {
                    delivered.append(assembler.count)
                    assembler = []
                }
                if let increment = receiver.consumed(callID: 1, bytes: frame.payload.readableBytes) {
                    queue.grant(callID: 1, increment: Int(increment))
                }
            }
        }
        return delivered
    }

    @Test("at a 64 KiB window, 60 KB frames after a smaller one are split to fit instead of waiting forever")
    func minimumWindow() throws {
        let messages = [10_000, 60_000, 60_000, 60_000, 30_000]
        #expect(try transfer(messages: messages, window: 65_536, frameSize: 65_536) == messages)
    }

    @Test("a maximum frame size above the window still moves large messages")
    func frameAboveWindow() throws {
        let messages = [1_000_000, 200_000, 1]
        #expect(try transfer(messages: messages, window: 65_536, frameSize: 1 << 20) == messages)
    }

    @Test("a split keeps COMPRESSED on the first part only and END_STREAM on the last")
    func splitFlags() throws {
        var frame = ByteBuffer()
        frame.writeFrame(Frame(type: .message, flags: [.compressed, .endStream], callID: 9, payload: ByteBuffer(repeating: 1, count: 100)))
        let (head, tail) = try #require(OutboundQueue.split(frame, payloadBytes: 30))
        let parts = try frames(head) + frames(tail)
        #expect(parts.map(\.flags) == [[.compressed, .more], [.endStream]])
        #expect(parts.map(\.payload.readableBytes) == [30, 70] && parts.allSatisfy { $0.callID == 9 })
    }
}
