import NIOCore

/// A connection's pending output, with fairness and flow control between calls.
///
/// When a message needs several frames only its first goes out at once; the rest wait in a
/// per-call queue and are released round-robin, one frame per call per turn, so small calls are
/// never stuck behind a large one. MESSAGE frames also spend the call's send window (the peer's
/// initial window plus its WINDOW grants): a call without credit waits, the others go on.
/// Frames of one call keep their order (a call's TRAILERS never overtakes its own fragments).
public struct OutboundQueue {
    /// Bytes ready to be written to the socket.
    public private(set) var output: ByteBuffer
    private var pending: [UInt32: [ByteBuffer]] = [:]
    private var rotation: [UInt32] = []
    private var credit: [UInt32: Int] = [:]
    private var forgotten: Set<UInt32> = []
    /// The peer's initial window per call.
    public var initialWindow: Int

    public init(allocator: ByteBufferAllocator = ByteBufferAllocator(), initialWindow: Int = 1024 * 1024) {
        output = allocator.buffer(capacity: 4096)
        self.initialWindow = initialWindow
    }

    /// Whether any frames wait.
    public var hasPending: Bool { !pending.isEmpty }

    /// Whether frames of `callID` wait (for fairness or for credit).
    public func hasPending(callID: UInt32) -> Bool { pending[callID] != nil }

    /// Encodes frames for `callID` with `body`, which appends complete frames to the buffer it
    /// is given; keeps what must wait.
    public mutating func append(callID: UInt32, _ body: (inout ByteBuffer) -> Void) {
        let start = output.writerIndex
        body(&output)
        settle(callID: callID, from: start)
    }

    /// Encodes connection-level frames (HELLO, PING, PONG, GOAWAY, CANCEL, WINDOW), which never wait.
    public mutating func appendControl(_ body: (inout ByteBuffer) -> Void) {
        body(&output)
    }

    /// The peer granted `increment` more bytes on `callID`.
    public mutating func grant(callID: UInt32, increment: Int) {
        guard !forgotten.contains(callID) || pending[callID] != nil else { return }
        credit[callID] = min((credit[callID] ?? initialWindow) + increment, Int(Int32.max))
    }

    /// Moves frames from the per-call queues into `output`, one per call per round, until
    /// `output` holds at least `limit` bytes or nothing can go.
    public mutating func release(upTo limit: Int) {
        var progressed = true
        while output.readableBytes < limit, progressed, !rotation.isEmpty {
            progressed = false
            var next: [UInt32] = []
            for callID in rotation {
                guard var frames = pending[callID], let first = frames.first else { continue }
                guard spend(callID: callID, frame: first) else {
                    next.append(callID)  // waits for WINDOW
                    continue
                }
                var frame = frames.removeFirst()
                output.writeBuffer(&frame)
                progressed = true
                if frames.isEmpty {
                    pending[callID] = nil
                    if forgotten.remove(callID) != nil { credit[callID] = nil }
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
        pending[callID] = nil
        credit[callID] = nil
        forgotten.remove(callID)
        rotation.removeAll { $0 == callID }
    }

    /// The call is over: its credit is dropped once its waiting frames have gone out.
    public mutating func forget(callID: UInt32) {
        if pending[callID] == nil {
            credit[callID] = nil
        } else {
            forgotten.insert(callID)
        }
    }

    /// MESSAGE frames spend the call's credit; other frames are free.
    private mutating func spend(callID: UInt32, frame: ByteBuffer) -> Bool {
        guard frame.getInteger(at: frame.readerIndex + 4, as: UInt8.self) == FrameType.message.rawValue else { return true }
        let size = frame.readableBytes - Frame.headerSize
        let available = credit[callID] ?? initialWindow
        guard size <= available else { return false }
        credit[callID] = available - size
        return true
    }

    private mutating func settle(callID: UInt32, from start: Int) {
        var frames: [ByteBuffer] = []
        var index = start
        while index < output.writerIndex, let length = output.getInteger(at: index, as: UInt32.self) {
            let size = Frame.headerSize + Int(length)
            if let frame = output.getSlice(at: index, length: size) { frames.append(frame) }
            index += size
        }
        guard pending[callID] == nil, let first = frames.first, spend(callID: callID, frame: first) else {
            // Earlier frames of this call wait, or the first one lacks credit: all of it waits.
            output.moveWriterIndex(to: start)
            if pending[callID] == nil { rotation.append(callID) }
            pending[callID, default: []].append(contentsOf: frames)
            return
        }
        if frames.count > 1 {
            output.moveWriterIndex(to: start + first.readableBytes)
            pending[callID] = Array(frames.dropFirst())
            rotation.append(callID)
        }
    }
}

/// The receiving side of flow control for one connection: how much each call may still send,
/// and when to grant more.
///
/// A call starts with this side's initial window. Consumed bytes are returned in WINDOW frames
/// once they reach half the window, so a steady stream needs one WINDOW per half window.
public struct InboundWindows {
    public let initialWindow: Int
    private var remaining: [UInt32: Int] = [:]
    private var unacknowledged: [UInt32: Int] = [:]

    public init(initialWindow: Int) {
        self.initialWindow = initialWindow
    }

    /// Accounts a MESSAGE frame's payload; a peer that exceeds the window broke the protocol.
    public mutating func received(callID: UInt32, bytes: Int) throws {
        let left = (remaining[callID] ?? initialWindow) - bytes
        guard left >= 0 else {
            throw WireError(.flowControl, "call \(callID) sent \(bytes) bytes beyond its window")
        }
        remaining[callID] = left
    }

    /// Bytes of `callID` were consumed; returns the increment to grant now, if any.
    public mutating func consumed(callID: UInt32, bytes: Int) -> UInt32? {
        guard remaining[callID] != nil else { return nil }
        let owed = (unacknowledged[callID] ?? 0) + bytes
        guard owed >= initialWindow / 2 else {
            unacknowledged[callID] = owed
            return nil
        }
        unacknowledged[callID] = 0
        remaining[callID, default: initialWindow] += owed
        return UInt32(clamping: owed)
    }

    public mutating func forget(callID: UInt32) {
        remaining[callID] = nil
        unacknowledged[callID] = nil
    }
}
