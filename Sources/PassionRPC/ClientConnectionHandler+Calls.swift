import NIOCore
import PassionWire

/// Starting, writing, half-closing and cancelling calls, pings, closing, and the output.
extension ClientConnectionHandler {

    /// Starts a call, or queues it while the server's call limit is reached.
    func start(_ call: ClientCall, head: CallHead, message: ByteBuffer?, endStream: Bool, compress: Bool) {
        switch state {
        case .starting:
            waitingToStart.append((call, head, message, endStream, compress))
            return
        case .draining, .closed:
            call.fail(RPCError(code: .unavailable, message: "connection is closing", wasRefused: true))
            return
        case .ready:
            break
        }
        if let settings, calls.count >= settings.peer.maxConcurrentCalls {
            waitingToStart.append((call, head, message, endStream, compress))
            return
        }
        send(call, head: head, message: message, endStream: endStream, compress: compress)
    }

    func send(_ call: ClientCall, head: CallHead, message: ByteBuffer?, endStream: Bool, compress: Bool) {
        guard let writer, let settings else { return }
        // The CALL frame's header fields must fit in one frame of the server's size.
        let budget = min(settings.peer.maxMetadataSize, settings.peer.maxFrameSize - head.method.utf8.count - 16)
        do {
            try head.metadata.validate(limit: budget)
        } catch let error as WireError {
            call.fail(RPCError(code: .invalidArgument, message: error.message))
            return
        } catch {
            call.fail(RPCError(code: .invalidArgument, message: "invalid metadata"))
            return
        }
        if let message, let tooLarge = requestTooLarge(message) {
            call.fail(tooLarge)
            return
        }
        // Call ids never wrap: an exhausted connection takes no new calls and the pool opens another.
        guard nextCallID < UInt32.max else {
            isDraining = true
            call.fail(RPCError(code: .unavailable, message: "connection has used all call ids", wasRefused: true))
            return
        }
        let id = nextCallID
        nextCallID += 1
        call.id = id
        calls[id] = call
        call.requestClosed = endStream
        queue.append(callID: id) {
            writer.writeCall(callID: id, head: head, message: message, endStream: endStream, compress: compress, into: &$0)
        }
        call.started.succeed()
        scheduleFlush()
    }

    func requestTooLarge(_ message: ByteBuffer) -> RPCError? {
        guard let limit = settings?.peer.maxMessageSize, message.readableBytes > limit else { return nil }
        return RPCError(
            code: .resourceExhausted,
            message: "request of \(message.readableBytes) bytes exceeds the server's maximum message size \(limit)")
    }

    func startWaitingCalls() {
        guard case .ready = state, let settings else { return }
        while !waitingToStart.isEmpty, calls.count < settings.peer.maxConcurrentCalls {
            let (call, head, message, endStream, compress) = waitingToStart.removeFirst()
            send(call, head: head, message: message, endStream: endStream, compress: compress)
        }
    }

    func writeMessage(_ call: ClientCall, _ message: ByteBuffer, compress: Bool) throws -> EventLoopFuture<Void>? {
        guard let writer, let context, call.id != 0, calls[call.id] === call, !call.requestClosed else {
            throw call.finalError ?? RPCError(code: .cancelled, message: "the call has ended")
        }
        if let tooLarge = requestTooLarge(message) { throw tooLarge }
        queue.append(callID: call.id) {
            writer.writeMessage(callID: call.id, message: message, endStream: false, compress: compress, into: &$0)
        }
        scheduleFlush()
        guard context.channel.isWritable, !queue.hasPending(callID: call.id) else {
            let promise = context.eventLoop.makePromise(of: Void.self)
            writeWaiters.add(callID: call.id, promise: promise)
            return promise.futureResult
        }
        return nil
    }

    func halfClose(_ call: ClientCall) {
        guard let writer, calls[call.id] === call, !call.requestClosed else { return }
        call.requestClosed = true
        queue.append(callID: call.id) { writer.writeHalfClose(callID: call.id, into: &$0) }
        scheduleFlush()
    }

    /// Ends a call from the client side: CANCEL to the server, `error` to the caller.
    func cancel(_ call: ClientCall, reason: CancelReason, error: RPCError) {
        if let index = waitingToStart.firstIndex(where: { $0.0 === call }) {
            waitingToStart.remove(at: index)
            call.fail(error)
            return
        }
        guard call.id != 0, calls[call.id] === call else { return }
        calls[call.id] = nil
        queue.discard(callID: call.id)
        if let writer {
            queue.appendControl { writer.writeCancel(callID: call.id, reason: reason, text: "", into: &$0) }
        }
        scheduleFlush()
        call.fail(error)
        callFinished(call.id)
    }

    func ping() -> EventLoopFuture<Duration> {
        guard let context else { preconditionFailure("ping before handlerAdded") }
        let promise = context.eventLoop.makePromise(of: Duration.self)
        guard case .ready = state else {
            promise.fail(RPCError(code: .unavailable, message: "connection not ready"))
            return promise.futureResult
        }
        let id = nextPingID
        nextPingID += 1
        pings[id] = promise
        queue.appendControl { FrameWriter.writePing(.ping, data: id, into: &$0) }
        flushNow()
        return promise.futureResult
    }

    /// Tells the server no more calls come (GOAWAY) and closes; open calls fail with UNAVAILABLE.
    func close() {
        guard let context else { return }
        if case .ready = state {
            let goAway = GoAway(lastCallID: 0, code: .noError, debugMessage: "client closing")
            queue.appendControl { FrameWriter.writeGoAway(goAway, into: &$0) }
            flushNow()
        }
        context.close(promise: nil)
    }

    func callFinished(_ id: UInt32) {
        windows.forget(callID: id)
        queue.forget(callID: id)
        resumeWriters()
        startWaitingCalls()
        if case .draining = state, calls.isEmpty { context?.close(promise: nil) }
    }

    func scheduleFlush() {
        guard !flushScheduled, let context else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute { loopBound.value.flushNow() }
    }

    func flushNow() {
        flushScheduled = false
        guard let context else { return }
        queue.release(upTo: 256 * 1024)
        let progressed = queue.output.readableBytes > 0
        if progressed {
            context.writeAndFlush(wrapOutboundOut(queue.takeOutput(allocator: context.channel.allocator)), promise: nil)
        }
        guard context.channel.isWritable else { return }  // writability change resumes
        // Frames that wait only for a WINDOW are rescheduled by the WINDOW, not polled.
        if progressed, queue.hasPending { scheduleFlush() }
        resumeWriters()
    }
}
