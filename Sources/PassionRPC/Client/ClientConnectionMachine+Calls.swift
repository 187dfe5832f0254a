import NIOCore
import PassionWire

/// What the caller does: start calls, write, half-close and cancel them, ping, close.
extension ClientConnectionMachine {

    /// Submits a call. It starts at once, or waits for the HELLO or for a free slot under the
    /// server's call limit; `.started` says when its CALL frame is queued.
    mutating func start(
        kind: CallKind, head: CallHead, message: ByteBuffer?, endStream: Bool, compress: Bool
    ) -> (ClientCallHandle, [ClientConnectionAction]) {
        let pending = PendingCall(
            handle: makeHandle(), kind: kind, head: head, message: message, endStream: endStream, compress: compress)
        var actions: [ClientConnectionAction] = []
        switch phase {
        case .starting:
            enqueue(pending)
        case .draining, .closed:
            actions.append(.failed(pending.handle, RPCError(code: .unavailable, message: "connection is closing", wasRefused: true)))
        case .ready:
            if let settings, calls.count >= settings.peer.maxConcurrentCalls {
                enqueue(pending)
            } else {
                send(pending, &actions)
            }
        }
        return (pending.handle, actions)
    }

    /// Puts a call on the wire, unless its head or message cannot be sent to this server.
    mutating func send(_ pending: PendingCall, _ actions: inout [ClientConnectionAction]) {
        guard let writer, let settings else { return }
        // The CALL frame's header fields must fit in one frame of the server's size.
        let budget = min(settings.peer.maxMetadataSize, settings.peer.maxFrameSize - pending.head.method.utf8.count - 16)
        do {
            try pending.head.metadata.validate(limit: budget)
        } catch {
            let message = (error as? WireError)?.message ?? "invalid metadata"
            actions.append(.failed(pending.handle, RPCError(code: .invalidArgument, message: message)))
            return
        }
        if let message = pending.message, let tooLarge = requestTooLarge(message) {
            actions.append(.failed(pending.handle, tooLarge))
            return
        }
        guard nextCallID < UInt32.max else {
            actions.append(.failed(pending.handle, RPCError(code: .unavailable, message: "connection has used all call ids", wasRefused: true)))
            return
        }
        let id = nextCallID
        nextCallID += 1
        register(ClientCallState(id: id, handle: pending.handle, kind: pending.kind, requestClosed: pending.endStream))
        queue.append(callID: id) {
            writer.writeCall(
                callID: id, head: pending.head, message: pending.message, endStream: pending.endStream,
                compress: pending.compress, into: &$0)
        }
        actions.append(.started(pending.handle))
    }

    func requestTooLarge(_ message: ByteBuffer) -> RPCError? {
        guard let limit = settings?.peer.maxMessageSize, message.readableBytes > limit else { return nil }
        return RPCError(
            code: .resourceExhausted,
            message: "request of \(message.readableBytes) bytes exceeds the server's maximum message size \(limit)")
    }

    /// Queues one request message; returns the call id (the writer waits until its frames left),
    /// or nil when the call has ended or its request side is closed.
    mutating func writeMessage(_ handle: ClientCallHandle, _ message: ByteBuffer, compress: Bool) throws(RPCError) -> UInt32? {
        guard let writer, let id = callID(of: handle), let call = calls[id], !call.requestClosed else { return nil }
        if let tooLarge = requestTooLarge(message) { throw tooLarge }
        queue.append(callID: id) { writer.writeMessage(callID: id, message: message, endStream: false, compress: compress, into: &$0) }
        return id
    }

    /// Ends the request side (HALF_CLOSE).
    mutating func halfClose(_ handle: ClientCallHandle) {
        guard let writer, let id = callID(of: handle), let call = calls[id], !call.requestClosed else { return }
        setRequestClosed(callID: id)
        queue.append(callID: id) { writer.writeHalfClose(callID: id, into: &$0) }
    }

    /// Ends a call from the client side: CANCEL to the server if it started, `error` to the caller.
    mutating func cancel(_ handle: ClientCallHandle, reason: CancelReason, error: RPCError) -> [ClientConnectionAction] {
        if removeWaiting(handle) { return [.failed(handle, error)] }
        guard let id = callID(of: handle), let call = calls[id] else { return [] }
        queue.discard(callID: id)
        if let writer {
            queue.appendControl { writer.writeCancel(callID: id, reason: reason, text: "", into: &$0) }
        }
        var actions: [ClientConnectionAction] = []
        end(call, with: .failed(handle, error), &actions)
        return actions
    }

    /// Queues a PING; nil before the HELLO or once closing.
    mutating func ping() -> UInt64? {
        guard phase == .ready else { return nil }
        let id = addPing()
        queue.appendControl { FrameWriter.writePing(.ping, data: id, into: &$0) }
        return id
    }

    /// Tells the server no more calls come (GOAWAY) and closes; open calls fail when the socket
    /// closes.
    mutating func close() -> [ClientConnectionAction] {
        if phase == .ready {
            let goAway = GoAway(lastCallID: 0, code: .noError, debugMessage: "client closing")
            queue.appendControl { FrameWriter.writeGoAway(goAway, into: &$0) }
        }
        return [.close]
    }
}
