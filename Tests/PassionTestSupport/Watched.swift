import Synchronization

/// A value that tasks change and a test waits on. A wait returns as soon as its condition holds,
/// however long that takes on a loaded machine, with no polling and no guessed duration; a
/// condition never met is reported by the test's time limit, which cancels the wait.
public final class Watched<Value: Sendable>: Sendable {
    public typealias Condition = @Sendable (Value) -> Bool

    private struct Guarded {
        var value: Value
        var nextTicket = 0
        var waiters: [(ticket: Int, condition: Condition, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private let guarded: Mutex<Guarded>

    public init(_ value: Value) {
        guarded = Mutex(Guarded(value: value))
    }

    public var value: Value { guarded.withLock { $0.value } }

    /// Changes the value and wakes every wait whose condition now holds.
    public func update(_ change: (inout Value) -> Void) {
        let ready = guarded.withLock { guarded -> [CheckedContinuation<Void, Never>] in
            change(&guarded.value)
            var ready: [CheckedContinuation<Void, Never>] = []
            let value = guarded.value
            guarded.waiters.removeAll { waiter in
                guard waiter.condition(value) else { return false }
                ready.append(waiter.continuation)
                return true
            }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }

    /// Waits until `condition` holds; false when the waiting task was cancelled first.
    @discardableResult
    public func wait(until condition: @escaping Condition) async -> Bool {
        let ticket = guarded.withLock { guarded -> Int in
            guarded.nextTicket += 1
            return guarded.nextTicket
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                // Checked under the lock that the cancel handler takes: a cancel either finds the
                // waiter here or is seen here.
                let resumeNow = guarded.withLock { guarded -> Bool in
                    if condition(guarded.value) || Task.isCancelled { return true }
                    guarded.waiters.append((ticket, condition, continuation))
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = guarded.withLock { guarded -> CheckedContinuation<Void, Never>? in
                guard let index = guarded.waiters.firstIndex(where: { $0.ticket == ticket }) else { return nil }
                return guarded.waiters.remove(at: index).continuation
            }
            waiter?.resume()
        }
        return condition(value)
    }
}
