import NIOCore

/// A connection's pending output, with fairness and flow control between calls.
///
/// When a message needs several frames only its first goes out at once; the rest wait in a
/// per-call queue and are released round-robin, one frame per call per turn, so small calls are
/// never stuck behind a large one. MESSAGE frames also spend the call's send window (the peer's
/// initial window plus its WINDOW grants): a call without credit waits, the others go on. A
/// MESSAGE frame larger than the credit left is split to fit it (WIRE.md 10.7): a receiver
/// announces more only after half its window was consumed, so waiting for the whole frame could
/// wait forever. Frames of one call keep their order (a call's TRAILERS never overtakes its own
/// fragments).
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

    /// Bytes of frames waiting (for fairness or credit), plus those ready for the socket.
    public var bufferedBytes: Int {
        output.readableBytes + pending.values.reduce(0) { total, frames in frames.reduce(total) { $0 + $1.readableBytes } }
    }

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
                guard let (ready, rest) = take(callID: callID, frame: first) else {
                    next.append(callID)  // waits for WINDOW
                    continue
                }
                var frame = ready
                if let rest { frames[0] = rest } else { frames.removeFirst() }
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

    /// The part of `frame` the call's credit lets go now, and what stays: MESSAGE frames spend
    /// credit and are split to fit it; other frames are free. Nil while there is no credit.
    private mutating func take(callID: UInt32, frame: ByteBuffer) -> (ByteBuffer, ByteBuffer?)? {
        guard frame.getInteger(at: frame.readerIndex + 4, as: UInt8.self) == FrameType.message.rawValue else { return (frame, nil) }
        let size = frame.readableBytes - Frame.headerSize
        let available = credit[callID] ?? initialWindow
        guard size > available else {
            credit[callID] = available - size
            return (frame, nil)
        }
        guard available > 0, let (head, tail) = Self.split(frame, payloadBytes: available) else { return nil }
        credit[callID] = 0
        return (head, tail)
    }

    /// A MESSAGE frame as two fragments of the same message: the first `payloadBytes` bytes with
    /// MORE (and COMPRESSED if the frame had it, since only a message's first fragment carries
    /// it), and the rest with the frame's other flags.
    static func split(_ frame: ByteBuffer, payloadBytes: Int) -> (ByteBuffer, ByteBuffer)? {
        let start = frame.readerIndex
        guard let flagsByte = frame.getInteger(at: start + 5, as: UInt8.self),
            let callID = frame.getInteger(at: start + 6, as: UInt32.self),
            let headPayload = frame.getSlice(at: start + Frame.headerSize, length: payloadBytes),
            let tailPayload = frame.getSlice(
                at: start + Frame.headerSize + payloadBytes, length: frame.readableBytes - Frame.headerSize - payloadBytes)
        else { return nil }
        let flags = FrameFlags(rawValue: flagsByte)
        var headFlags = flags.subtracting(.endStream)
        headFlags.insert(.more)
        var head = ByteBuffer()
        head.reserveCapacity(Frame.headerSize + payloadBytes)
        head.writeFrame(Frame(type: .message, flags: headFlags, callID: callID, payload: headPayload))
        var tail = ByteBuffer()
        tail.reserveCapacity(Frame.headerSize + tailPayload.readableBytes)
        tail.writeFrame(Frame(type: .message, flags: flags.subtracting(.compressed), callID: callID, payload: tailPayload))
        return (head, tail)
    }

    private mutating func settle(callID: UInt32, from start: Int) {
        var frames: [ByteBuffer] = []
        var index = start
        while index < output.writerIndex, let length = output.getInteger(at: index, as: UInt32.self) {
            let size = Frame.headerSize + Int(length)
            if let frame = output.getSlice(at: index, length: size) { frames.append(frame) }
            index += size
        }
        guard pending[callID] == nil, let first = frames.first, let (ready, rest) = take(callID: callID, frame: first) else {
            // Earlier frames of this call wait, or the first one has no credit: all of it waits.
            output.moveWriterIndex(to: start)
            if pending[callID] == nil { rotation.append(callID) }
            pending[callID, default: []].append(contentsOf: frames)
            return
        }
        let waiting = (rest.map { [$0] } ?? []) + frames.dropFirst()
        guard !waiting.isEmpty else { return }
        if rest == nil {
            // The first frame is already in place in `output`.
            output.moveWriterIndex(to: start + first.readableBytes)
        } else {
            // Its head is a new buffer: write it where the frames began.
            output.moveWriterIndex(to: start)
            var head = ready
            output.writeBuffer(&head)
        }
        pending[callID] = waiting
        rotation.append(callID)
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
