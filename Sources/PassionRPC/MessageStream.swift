import NIOCore

/// The messages of one direction of a call, as they arrive: an `AsyncSequence` with
/// back-pressure. When its consumer falls behind, the connection stops reading from the socket
/// until it catches up, so a fast sender cannot make the receiver buffer without bound.
public struct MessageStream: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    typealias Producer = NIOThrowingAsyncSequenceProducer<
        ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark,
        MessageStreamDelegate
    >

    let producer: Producer

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: Producer.AsyncIterator

        public mutating func next() async throws -> ByteBuffer? {
            try await base.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: producer.makeAsyncIterator())
    }

    /// A stream and the source that feeds it; `onDemand` is called (from any thread) with true
    /// when the consumer wants more and false when it stops consuming.
    static func make(
        onDemand: @escaping @Sendable (Bool) -> Void, onTerminate: @escaping @Sendable () -> Void = {}
    ) -> (MessageStream, Producer.Source) {
        let result = Producer.makeSequence(
            elementType: ByteBuffer.self, failureType: (any Error).self,
            backPressureStrategy: .init(lowWatermark: 4, highWatermark: 32), finishOnDeinit: true,
            delegate: MessageStreamDelegate(onDemand: onDemand, onTerminate: onTerminate))
        return (MessageStream(producer: result.sequence), result.source)
    }
}

/// Forwards the producer's demand signals to the connection.
struct MessageStreamDelegate: NIOAsyncSequenceProducerDelegate {
    let onDemand: @Sendable (Bool) -> Void
    let onTerminate: @Sendable () -> Void

    func produceMore() { onDemand(true) }

    func didTerminate() {
        onDemand(true)
        onTerminate()
    }
}
