import NIOCore
import PassionWire

/// Events from the calls' tasks: authentication, consumption, responses, their end.
extension ServerConnectionMachine {
    /// The authenticator accepted the call: the window bytes it held go back to the client.
    mutating func authenticated(_ id: UInt32) -> [ServerConnectionAction] {
        guard let index = calls.index(forKey: id), !peek(index, { $0.authenticated }) else { return [] }
        let held = peek(index) { call in
            call.authenticated = true
            defer { call.heldWindowBytes = 0 }
            return call.heldWindowBytes
        }
        returnWindow(id, bytes: held)
        return []
    }

    /// The handler took a message of its request stream: `wireSize` bytes go back to the window,
    /// `size` bytes are no longer held.
    mutating func consumed(_ id: UInt32, wireSize: Int, size: Int) -> [ServerConnectionAction] {
        guard let index = calls.index(forKey: id) else { return [] }
        releaseRequestBytes(min(size, peek(index, { $0.bufferedBytes })), for: id)
        returnWindow(id, bytes: wireSize)
        return []
    }

    /// A stream writer's message: queued, queued with a wait, or refused because the call ended.
    mutating func writeResponse(
        _ id: UInt32, message: ByteBuffer, compress: Bool, initialMetadata: Metadata
    ) -> (ServerWriteResult, [ServerConnectionAction]) {
        var actions: [ServerConnectionAction] = []
        guard let index = calls.index(forKey: id), peek(index, { $0.handlerRunning && !$0.responseClosed }),
            phase != .closing, phase != .closed, let writer
        else {
            return (.ended(RPCError(code: .cancelled, message: "the call has ended")), actions)
        }
        if let refusal = refusal(for: message) { return (.ended(refusal), actions) }
        sendHeadersIfNeeded(id, initialMetadata, writer)
        queue.append(callID: id) { writer.writeMessage(callID: id, message: message, endStream: false, compress: compress, into: &$0) }
        peek(index, { $0.metrics })?.sent(message.readableBytes)
        reservedResponseBytes += message.readableBytes
        checkQueuedResponses(&actions)
        return (queue.hasPending(callID: id) ? .wait : .queued, actions)
    }

    /// The handler returned: its status goes out (unless the call already ended), its request
    /// data is dropped, and its slot is free.
    mutating func handlerFinished(_ id: UInt32, _ outcome: ServerCallOutcome, now: Instant) -> [ServerConnectionAction] {
        guard let index = calls.index(forKey: id), peek(index, { $0.handlerRunning }) else { return [] }
        var actions: [ServerConnectionAction] = []
        let responseClosed = peek(index) { call in
            call.handlerRunning = false
            return call.responseClosed
        }
        maybeFinished.insert(id)
        runningHandlers -= 1
        releaseRequestBuffers(id)
        if !responseClosed, phase != .closing, phase != .closed {
            var status = outcome.error
            var message = outcome.message
            if let response = message, let refusal = refusal(for: response) {
                status = refusal
                message = nil
            }
            sendTrailers(id, status: status, message: message, outcome: outcome)
            checkQueuedResponses(&actions)
        }
        releaseFinishedCalls(now: now, &actions)
        return actions
    }

    /// Why a response cannot be sent: above the client's message limit, or the server's memory
    /// budget is spent (reserved here when it fits).
    private mutating func refusal(for message: ByteBuffer) -> RPCError? {
        if let limit = settings?.peer.maxMessageSize, message.readableBytes > limit {
            return RPCError(
                code: .resourceExhausted,
                message: "response of \(message.readableBytes) bytes exceeds the client's maximum message size \(limit)")
        }
        guard budget?.reserve(message.readableBytes) ?? true else {
            return RPCError(code: .resourceExhausted, message: "the server holds too many responses; retry later")
        }
        return nil
    }

    /// Gives back the budget of responses that have gone out (or were discarded).
    mutating func syncResponseReservation() {
        let queued = queue.bufferedBytes
        guard reservedResponseBytes > queued else { return }
        budget?.release(reservedResponseBytes - queued)
        reservedResponseBytes = queued
    }

    // MARK: - Ending calls

    /// Ends a call with `error` (TRAILERS) and cancels its handler; its slot is freed when the
    /// handler returns.
    mutating func failCall(_ id: UInt32, _ error: RPCError, _ actions: inout [ServerConnectionAction]) {
        guard let index = calls.index(forKey: id), !peek(index, { $0.responseClosed }) else { return }
        let handlerRunning = peek(index) { $0.handlerRunning }
        sendTrailers(id, status: error, message: nil, outcome: nil)
        releaseRequestBuffers(id)
        if handlerRunning { actions.append(.cancelCall(callID: id, error: error)) }
    }

    /// The call's deadline passed: DEADLINE_EXCEEDED now. A response still waiting for window or
    /// the socket is dropped for it: TRAILERS may end a call between the fragments of a message
    /// (WIRE.md 9), and a client that stopped reading must not keep it forever.
    mutating func deadlineExceeded(_ id: UInt32, _ actions: inout [ServerConnectionAction]) {
        guard let index = calls.index(forKey: id) else { return }
        let responseClosed = peek(index) { call in
            call.deadline = nil
            return call.responseClosed
        }
        callDeadlines[id] = nil
        let error = RPCError(code: .deadlineExceeded, message: "deadline exceeded")
        if !responseClosed {
            queue.discard(callID: id)
            failCall(id, error, &actions)
        } else if queue.hasPending(callID: id) {
            queue.discard(callID: id)
            // The status queued before is dropped with the rest: the client is told this one.
            calls.values[index].status = .deadlineExceeded
            if let writer {
                let head = error.trailersHead()
                queue.append(callID: id) { writer.writeTrailers(callID: id, head: head, message: nil, compress: false, into: &$0) }
            }
        }
    }

    /// CANCEL(REFUSED): the call was not processed at all.
    mutating func refuse(_ id: UInt32, _ text: String, reason: CallRefusal) {
        metrics.refused(reason)
        guard let writer else { return }
        queue.appendControl { writer.writeCancel(callID: id, reason: .refused, text: text, into: &$0) }
    }

    /// TRAILERS for a call that never got state (unknown method, metadata too large).
    mutating func finishUnstarted(_ id: UInt32, _ error: RPCError, reason: CallRefusal) {
        metrics.refused(reason)
        guard let writer else { return }
        let head = error.trailersHead()
        queue.append(callID: id) { writer.writeTrailers(callID: id, head: head, message: nil, compress: false, into: &$0) }
    }

    // MARK: - Frames out

    /// Metadata bytes a HEADERS or TRAILERS frame may carry: the client's limit, and small enough
    /// that status text and details still fit in one frame.
    var metadataBudget: Int {
        guard let peer = settings?.peer else { return 8 * 1024 }
        return min(peer.maxMetadataSize, peer.maxFrameSize - TrailersHead.maxMessageBytes - 512)
    }

    private mutating func sendHeadersIfNeeded(_ id: UInt32, _ metadata: Metadata, _ writer: FrameWriter) {
        guard let index = calls.index(forKey: id), !peek(index, { $0.headersSent }) else { return }
        calls.values[index].headersSent = true
        let initial = metadata.sanitized(limit: metadataBudget)
        guard !initial.isEmpty else { return }
        queue.append(callID: id) { writer.writeHeaders(callID: id, metadata: initial, into: &$0) }
    }

    private mutating func sendTrailers(_ id: UInt32, status: RPCError?, message: ByteBuffer?, outcome: ServerCallOutcome?) {
        guard let writer, let index = calls.index(forKey: id), !peek(index, { $0.responseClosed }) else { return }
        calls.values[index].responseClosed = true
        calls.values[index].status = status?.code ?? .ok
        if let message { peek(index, { $0.metrics })?.sent(message.readableBytes) }
        maybeFinished.insert(id)
        sendHeadersIfNeeded(id, outcome?.initialMetadata ?? Metadata(), writer)
        var head = status?.trailersHead() ?? TrailersHead(status: 0)
        for entry in outcome?.trailingMetadata ?? Metadata() { head.metadata.append(entry) }
        // Whatever a handler put there, the frame must stay within the client's limits.
        head.fields = head.fields.sanitized(limit: metadataBudget / 2)
        head.metadata = head.metadata.sanitized(limit: metadataBudget / 2)
        let compress = outcome?.compress ?? false
        if let message { reservedResponseBytes += message.readableBytes }
        queue.append(callID: id) { writer.writeTrailers(callID: id, head: head, message: message, compress: compress, into: &$0) }
    }
}
