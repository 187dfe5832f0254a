import NIOCore

/// A connection's pending output, with fairness between calls: when a message needs several
/// frames, only its first goes out at once; the rest wait in a per-call queue and are released
/// round-robin, one frame per call per turn, so small calls are never stuck behind a large one.
///
/// Frames of one call keep their order (a call's TRAILERS never overtakes its own fragments).
public struct OutboundQueue {
    /// Bytes ready to be written to the socket.
    public private(set) var output: ByteBuffer
    private var pending: [UInt32: [ByteBuffer]] = [:]
    private var rotation: [UInt32] = []

    public init(allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        output = allocator.buffer(capacity: 4096)
    }

    /// Whether frames wait in per-call queues.
    public var hasPending: Bool { !rotation.isEmpty }

    /// Encodes frames for `callID` with `body`, which appends complete frames to the buffer it
    /// is given; keeps what must wait.
    public mutating func append(callID: UInt32, _ body: (inout ByteBuffer) -> Void) {
        let start = output.writerIndex
        body(&output)
        settle(callID: callID, from: start)
    }

    /// Encodes connection-level frames (HELLO, PING, PONG, GOAWAY, CANCEL), which never wait.
    public mutating func appendControl(_ body: (inout ByteBuffer) -> Void) {
        body(&output)
    }

    /// Moves frames from the per-call queues into `output`, one per call per round, until
    /// `output` holds at least `limit` bytes or nothing waits.
    public mutating func release(upTo limit: Int) {
        while output.readableBytes < limit, !rotation.isEmpty {
            var next: [UInt32] = []
            for callID in rotation {
                guard var frames = pending[callID], !frames.isEmpty else { continue }
                var frame = frames.removeFirst()
                output.writeBuffer(&frame)
                if frames.isEmpty {
                    pending[callID] = nil
                } else {
                    pending[callID] = frames
                    next.append(callID)
                }
            }
            rotation = next
        }
    }

    /// Hands the ready bytes to the caller and starts a new buffer.
    public mutating func takeOutput(allocator: ByteBufferAllocator) -> ByteBuffer {
        let ready = output
        output = allocator.buffer(capacity: 4096)
        return ready
    }

    /// Forgets a call's waiting frames (it was cancelled).
    public mutating func discard(callID: UInt32) {
        guard pending.removeValue(forKey: callID) != nil else { return }
        rotation.removeAll { $0 == callID }
    }

    private mutating func settle(callID: UInt32, from start: Int) {
        var frames: [ByteBuffer] = []
        var index = start
        while index < output.writerIndex, let length = output.getInteger(at: index, as: UInt32.self) {
            let size = Frame.headerSize + Int(length)
            if let frame = output.getSlice(at: index, length: size) { frames.append(frame) }
            index += size
        }
        if pending[callID] != nil {
            // Earlier frames of this call still wait: everything new waits behind them.
            output.moveWriterIndex(to: start)
            pending[callID]?.append(contentsOf: frames)
        } else if frames.count > 1 {
            output.moveWriterIndex(to: start + frames[0].readableBytes)
            pending[callID] = Array(frames.dropFirst())
            rotation.append(callID)
        }
    }
}
