import NIOCore
import PassionWire

/// Frames from the client, once the connection is ready.
extension ServerConnectionMachine {
    mutating func dispatch(_ frame: Frame, now: Instant, _ actions: inout [ServerConnectionAction]) throws {
        switch frame.type {
        case .call:
            try receiveCall(frame, now: now, &actions)
        case .message:
            guard let id = try liveCall(frame.callID) else { return }
            try windows.received(callID: id, bytes: frame.payload.readableBytes)
            try receiveMessageBytes(frame.payload, flags: frame.flags, id: id, wireSize: frame.payload.readableBytes, &actions)
            if frame.flags.contains(.endStream), !frame.flags.contains(.more), let index = calls.index(forKey: id),
                !peek(index, { $0.responseClosed })
            {
                try closeRequest(id, &actions)
            }
        case .halfClose:
            guard frame.payload.readableBytes == 0 else { throw WireError(.malformedFrame, "HALF_CLOSE carries no payload") }
            guard let id = try liveCall(frame.callID) else { return }
            try closeRequest(id, &actions)
        case .cancel:
            // The payload (reason and text) is for logs only: any reason, or none, cancels.
            guard cancelBucket.take(now: now) else { throw WireError(.enhanceYourCalm, "too many cancelled calls") }
            guard let id = try liveCall(frame.callID) else { return }
            calls[id]?.responseClosed = true
            if calls[id]?.status == nil { calls[id]?.status = .cancelled }
            maybeFinished.insert(id)
            queue.discard(callID: id)
            releaseRequestBuffers(id)
            actions.append(.cancelCall(callID: id, error: RPCError(code: .cancelled, message: "cancelled by the client")))
        case .ping:
            guard frame.payload.readableBytes == 8 else { throw WireError(.malformedFrame, "PING must carry 8 bytes") }
            guard pingBucket.take(now: now) else { throw WireError(.enhanceYourCalm, "too many pings") }
            queue.appendControl {
                $0.writeFrameHeader(type: .pong, flags: [], callID: 0, payloadLength: 8)
                $0.writeImmutableBuffer(frame.payload)
            }
        case .pong:
            pingSentAt = nil
        case .window:
            var payload = frame.payload
            guard payload.readableBytes == 4, let increment = payload.readInteger(as: UInt32.self), increment > 0 else {
                throw WireError(.malformedFrame, "WINDOW must carry a positive 4-byte increment")
            }
            guard frame.callID != 0, frame.callID <= highestCallID else {
                throw WireError(.unexpectedFrame, "WINDOW for call \(frame.callID), which was never started")
            }
            // A call whose response still waits for window is still here, even when its handler
            // is done: the grant is what lets the rest of its response out.
            if calls[frame.callID] != nil {
                queue.grant(callID: frame.callID, increment: Int(increment))
            }
        case .goAway:
            var payload = frame.payload
            guard payload.readableBytes >= 5 else { throw WireError(.malformedFrame, "GOAWAY must carry at least 5 bytes") }
            _ = try GoAway.read(from: &payload)
            // Whatever its code: the client starts no more calls. Open ones finish, then close.
            if phase == .ready { phase = .draining }
            closeIfDrained(now: now, &actions)
        case .hello, .headers, .trailers:
            throw WireError(.unexpectedFrame, "\(frame.type) is not valid from a client here")
        default:
            guard frame.flags.contains(.ignorable) else { throw WireError(.unknownFrameType, "unknown frame type \(frame.type)") }
        }
    }

    /// The id of an open call, nil for a call that has ended (or an id that was skipped: the
    /// server cannot tell them apart), a protocol error for one never started.
    private mutating func liveCall(_ id: UInt32) throws -> UInt32? {
        guard id != 0, id <= highestCallID else {
            throw WireError(.unexpectedFrame, "frame for call \(id), which was never started")
        }
        guard let index = calls.index(forKey: id), !peek(index, { $0.responseClosed }) else { return nil }
        return id
    }

    private mutating func receiveCall(_ frame: Frame, now: Instant, _ actions: inout [ServerConnectionAction]) throws {
        guard frame.callID > highestCallID else {
            throw WireError(.callIDReuse, "call id \(frame.callID) is not above \(highestCallID)")
        }
        highestCallID = frame.callID
        guard phase == .ready else {
            refuse(frame.callID, "server is shutting down", reason: .draining)
            return
        }
        guard runningHandlers < configuration.settings.maxConcurrentCalls else {
            guard cancelBucket.take(now: now) else { throw WireError(.enhanceYourCalm, "too many refused calls") }
            refuse(frame.callID, "too many concurrent calls", reason: .concurrency)
            return
        }
        var payload = frame.payload
        let head: CallHead
        do {
            head = try CallHead.read(from: &payload, metadataLimit: configuration.settings.maxMetadataSize)
        } catch let error as WireError where !error.isConnectionError {
            finishUnstarted(frame.callID, RPCError(code: .resourceExhausted, message: error.message), reason: .metadata)
            return
        }
        guard let route = router.route(head.method) else {
            finishUnstarted(frame.callID, router.unroutable(head.method), reason: .unimplemented)
            return
        }
        let deadline = head.timeoutMicroseconds > 0 ? now + .microseconds(Int64(clamping: head.timeoutMicroseconds)) : nil
        let id = frame.callID
        calls[id] = ServerCallState(id: id, kind: route.descriptor.kind, deadline: deadline, startedAt: now, metrics: route.metrics)
        route.metrics?.callStarted()
        if let deadline { callDeadlines[id] = deadline }
        runningHandlers += 1
        idleSince = nil
        // The handler's task starts now and authenticates first: a stranger's call is refused
        // before its request is waited for.
        actions.append(.startCall(ServerCallStart(id: id, route: route, head: head, deadline: deadline)))
        if frame.flags.contains(.hasMessage) {
            guard !frame.flags.contains(.more) else {
                throw WireError(.malformedFrame, "a CALL's inline message must be whole (MORE is not allowed)")
            }
            try receiveMessageBytes(payload, flags: frame.flags, id: id, wireSize: 0, &actions)
        }
        if frame.flags.contains(.endStream), let index = calls.index(forKey: id), !peek(index, { $0.responseClosed }) {
            try closeRequest(id, &actions)
        }
    }

    /// Takes a message or a fragment of one; `wireSize` is the window it spent (0 inline).
    private mutating func receiveMessageBytes(
        _ bytes: ByteBuffer, flags: FrameFlags, id: UInt32, wireSize: Int, _ actions: inout [ServerConnectionAction]
    ) throws {
        // The call is changed where it lives (`calls.values[index]`): a copy would share the
        // assembler's fragment buffer, and appending to a shared buffer copies all of it.
        guard let settings, let index = calls.index(forKey: id) else { return }
        let (requestClosed, kind) = peek(index) { ($0.requestClosed, $0.kind) }
        guard !requestClosed else {
            throw WireError(.unexpectedFrame, "message after the end of call \(id)'s request")
        }
        let assembled: ByteBuffer?
        do {
            assembled = try calls.values[index].assembler.append(
                bytes, flags: flags, settings: settings, inflater: inflater, allocator: ByteBufferAllocator())
        } catch let error as WireError where !error.isConnectionError {
            let code: StatusCode = error.kind == .messageTooLarge ? .resourceExhausted : .internal
            failCall(id, RPCError(code: code, message: error.message), &actions)
            return
        }
        guard let message = assembled else {
            // A fragment: held in the assembler; its window bytes go back at once (once the call
            // is authenticated), so a message larger than the window can arrive.
            calls.values[index].assemblingBytes += bytes.readableBytes
            assemblingCalls.insert(id)
            try hold(requestBytes: bytes.readableBytes, for: id, &actions)
            returnWindow(id, bytes: wireSize)
            return
        }
        peek(index, { $0.metrics })?.received(message.readableBytes)
        // The fragments' bytes leave the assembler; the message is held until taken.
        releaseRequestBytes(peek(index, { $0.assemblingBytes }), for: id)
        calls.values[index].assemblingBytes = 0
        assemblingCalls.remove(id)
        try hold(requestBytes: message.readableBytes, for: id, &actions)
        guard !peek(index, { $0.responseClosed }) else { return }
        if kind.isSingleRequest {
            returnWindow(id, bytes: wireSize)
            let messages = peek(index) { call in
                call.requestMessages += 1
                return call.requestMessages
            }
            guard messages == 1 else {
                failCall(id, RPCError(code: .unimplemented, message: "\(id): a \(kind.rawValue) call takes exactly one request message"), &actions)
                return
            }
            calls.values[index].singleRequest = message
        } else {
            actions.append(.yieldRequest(callID: id, message: InboundMessage(bytes: message, wireSize: wireSize)))
        }
    }

    private mutating func closeRequest(_ id: UInt32, _ actions: inout [ServerConnectionAction]) throws {
        guard let index = calls.index(forKey: id) else { return }
        let (requestClosed, assembling, kind) = peek(index) { ($0.requestClosed, $0.assembler.isAssembling, $0.kind) }
        guard !requestClosed else { throw WireError(.unexpectedFrame, "call \(id) half-closed twice") }
        guard !assembling else {
            throw WireError(.unexpectedFrame, "call \(id) half-closed inside a fragmented message")
        }
        calls.values[index].requestClosed = true
        guard kind.isSingleRequest else {
            actions.append(.finishRequests(callID: id, error: nil))
            return
        }
        guard let request = calls.values[index].singleRequest.take() else {
            failCall(id, RPCError(code: .unimplemented, message: "a \(kind.rawValue) call takes exactly one request message"), &actions)
            return
        }
        actions.append(.deliverRequest(callID: id, message: request))
    }

    /// Returns consumed bytes to the client's window: now for an authenticated call, after
    /// authentication otherwise.
    mutating func returnWindow(_ id: UInt32, bytes: Int) {
        guard bytes > 0, let index = calls.index(forKey: id) else { return }
        guard peek(index, { $0.authenticated }) else {
            calls.values[index].heldWindowBytes += bytes
            return
        }
        guard let increment = windows.consumed(callID: id, bytes: bytes) else { return }
        queue.appendControl { FrameWriter.writeWindow(callID: id, increment: increment, into: &$0) }
    }

    // MARK: - Request memory

    /// Accounts request bytes a call holds; past the connection's limit the client is told to calm
    /// down, past the server's budget the call ends RESOURCE_EXHAUSTED.
    private mutating func hold(requestBytes bytes: Int, for id: UInt32, _ actions: inout [ServerConnectionAction]) throws {
        guard bytes > 0 else { return }
        if let index = calls.index(forKey: id) { calls.values[index].bufferedBytes += bytes }
        bufferedRequestBytes += bytes
        guard bufferedRequestBytes <= configuration.maxBufferedRequestBytes else {
            throw WireError(.enhanceYourCalm, "more than \(configuration.maxBufferedRequestBytes) bytes of requests held for one connection")
        }
        if let budget {
            guard budget.reserve(bytes) else {
                releaseRequestBytes(bytes, for: id, reserved: false)
                failCall(id, RPCError(code: .resourceExhausted, message: "the server holds too much request data; retry later"), &actions)
                return
            }
            reservedRequestBytes += bytes
        }
    }

    mutating func releaseRequestBytes(_ bytes: Int, for id: UInt32, reserved: Bool = true) {
        guard bytes > 0 else { return }
        if let index = calls.index(forKey: id) { calls.values[index].bufferedBytes -= bytes }
        bufferedRequestBytes -= bytes
        if reserved, let budget {
            budget.release(bytes)
            reservedRequestBytes -= bytes
        }
    }

    /// Drops whatever request data a call holds (it ended).
    mutating func releaseRequestBuffers(_ id: UInt32) {
        guard let index = calls.index(forKey: id) else { return }
        releaseRequestBytes(peek(index, { $0.bufferedBytes }), for: id)
        calls.values[index].assemblingBytes = 0
        assemblingCalls.remove(id)
        calls.values[index].assembler = MessageAssembler()
        calls.values[index].singleRequest = nil
    }
}
