import NIOCore

/// A received message and the MESSAGE payload bytes it took on the wire (what flow control
/// counts; zero for messages that arrived inline in CALL or TRAILERS).
package struct InboundMessage: Sendable {
    package var bytes: ByteBuffer
    package var wireSize: Int

    package init(bytes: ByteBuffer, wireSize: Int) {
        self.bytes = bytes
        self.wireSize = wireSize
    }
}

/// The messages of one direction of a call, as they arrive. Consuming a message returns its
/// bytes to the sender's window, so a consumer that falls behind slows down only its own call.
public struct MessageStream: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    package typealias Producer = NIOThrowingAsyncSequenceProducer<
        InboundMessage, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark,
        MessageStreamDelegate
    >

    let producer: Producer
    /// Told of every message taken: the window bytes it spent and its size.
    let onConsumed: @Sendable (_ wireSize: Int, _ size: Int) -> Void

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: Producer.AsyncIterator
        let onConsumed: @Sendable (_ wireSize: Int, _ size: Int) -> Void

        public mutating func next() async throws -> ByteBuffer? {
            guard let message = try await base.next() else { return nil }
            onConsumed(message.wireSize, message.bytes.readableBytes)
            return message.bytes
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: producer.makeAsyncIterator(), onConsumed: onConsumed)
    }

    /// A stream and the source that feeds it. The window bounds what can be buffered, so the
    /// producer's own back-pressure is not used.
    package static func make(
        onConsumed: @escaping @Sendable (_ wireSize: Int, _ size: Int) -> Void, onTerminate: @escaping @Sendable () -> Void = {}
    ) -> (MessageStream, Producer.Source) {
        let result = Producer.makeSequence(
            elementType: InboundMessage.self, failureType: (any Error).self,
            backPressureStrategy: .init(lowWatermark: 1 << 20, highWatermark: 1 << 21), finishOnDeinit: true,
            delegate: MessageStreamDelegate(onTerminate: onTerminate))
        return (MessageStream(producer: result.sequence, onConsumed: onConsumed), result.source)
    }
}

/// Tells the connection when the consumer dropped the stream.
package struct MessageStreamDelegate: NIOAsyncSequenceProducerDelegate {
    let onTerminate: @Sendable () -> Void

    package func produceMore() {}

    package func didTerminate() {
        onTerminate()
    }
}
