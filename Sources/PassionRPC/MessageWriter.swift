import NIOCore

/// Where a writer's messages go: the server's response side or the client's request side.
package protocol MessageSink: Sendable {
    /// Encodes and queues one message; suspends while the connection is not writable.
    func write(_ message: ByteBuffer, compress: Bool) async throws
}

/// Sends the messages of a stream, with back-pressure: `write` suspends while the connection's
/// socket buffer is full.
public struct MessageWriter: Sendable {
    let sink: any MessageSink

    package init(sink: any MessageSink) {
        self.sink = sink
    }

    /// Sends one serialized message; throws CANCELLED once the call has ended.
    public func write(_ message: ByteBuffer, compress: Bool = true) async throws {
        try await sink.write(message, compress: compress)
    }
}

extension EventLoop {
    /// Runs `body` on this loop, directly when already there (the common case: handlers run on
    /// their connection's loop), and waits for the future it may return.
    package func runAndWait(_ body: @escaping @Sendable () throws -> EventLoopFuture<Void>?) async throws {
        if inEventLoop {
            if let future = try body() { try await future.get() }
        } else {
            try await flatSubmit { () -> EventLoopFuture<Void> in
                do {
                    return try body() ?? self.makeSucceededVoidFuture()
                } catch {
                    return self.makeFailedFuture(error)
                }
            }.get()
        }
    }
}
