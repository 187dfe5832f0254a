import NIOCore
import PassionWire

/// Stream writers suspended until the socket takes data again and their call's own frames have
/// left the outbound queue (fairness or flow control); shared by both connection handlers.
package struct WriteWaiters {
    private var waiting: [(callID: UInt32, promise: EventLoopPromise<Void>)] = []

    package init() {}

    package mutating func add(callID: UInt32, promise: EventLoopPromise<Void>) {
        waiting.append((callID, promise))
    }

    /// Resumes writers whose call has nothing queued any more, or has ended.
    package var isEmpty: Bool { waiting.isEmpty }

    package mutating func resume(isWritable: Bool, queue: OutboundQueue, isOpen: (UInt32) -> Bool) {
        guard isWritable, !waiting.isEmpty else { return }
        var still: [(callID: UInt32, promise: EventLoopPromise<Void>)] = []
        for waiter in waiting {
            if queue.hasPending(callID: waiter.callID) && isOpen(waiter.callID) {
                still.append(waiter)
            } else {
                waiter.promise.succeed()
            }
        }
        waiting = still
    }

    package mutating func failAll(_ error: any Error) {
        let failed = waiting
        waiting = []
        for waiter in failed { waiter.promise.fail(error) }
    }
}
