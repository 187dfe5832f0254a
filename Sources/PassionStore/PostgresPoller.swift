import CLibPQ
import Foundation
import Synchronization

/// The event loop of the process's PostgreSQL connections: one thread, one epoll set over
/// every libpq socket, and a task executor. A task waiting for an answer suspends and this
/// thread resumes it when the socket is readable, taking every ready socket per wake-up.
/// Transactions not started on a watching event loop (`LoopReadiness`) run their bodies here
/// (as their tasks' preferred executor), so the statements
/// of many transactions interleave on one thread that wakes once per round of answers,
/// pgbench's shape; a thread per connection spent most of its time in the scheduler.
final class PostgresPoller: TaskExecutor, @unchecked Sendable {
    /// The process's loops, started on first use: two, like pgbench's threads on two cores.
    static let loops = [PostgresPoller(), PostgresPoller()]
    private static let nextLoop = Atomic<Int>(0)

    /// A loop for a new connection, in turn.
    static func next() -> PostgresPoller {
        loops[nextLoop.wrappingAdd(1, ordering: .relaxed).oldValue % loops.count]
    }

    /// The loop whose thread is running the caller, if any.
    static var current: PostgresPoller? {
        let thread = UInt(pthread_self())
        return loops.first { $0.thread.load(ordering: .relaxed) == thread }
    }

    static let readable = passion_epoll_readable
    static let writable = passion_epoll_writable
    /// What `wait` returns when the descriptor could not be watched at all.
    static let unwatchable: UInt32 = 0

    private let epoll: Int32
    private let waker: Int32
    private let waiters = Mutex<[Int32: CheckedContinuation<UInt32, Never>]>([:])
    private let jobs = Mutex<[UnownedJob]>([])
    /// Set while the thread waits in epoll with no job queued: only then does a new job need
    /// the eventfd written.
    private let sleeping = Atomic<Bool>(false)
    /// The loop thread's pthread id, once it runs.
    private let thread = Atomic<UInt>(0)

    private init() {
        epoll = passion_epoll_create()
        precondition(epoll >= 0, "epoll_create1 failed: \(errno)")
        waker = passion_epoll_add_waker(epoll)
        precondition(waker >= 0, "eventfd failed: \(errno)")
        Thread { [self] in run() }.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        jobs.withLock { $0.append(job) }
        if sleeping.exchange(false, ordering: .sequentiallyConsistent) { passion_wake(waker) }
    }

    /// Suspends until `descriptor` is ready for `events` (or hung up, or in error); returns what
    /// it is ready for. One waiter per descriptor at a time.
    func wait(_ descriptor: Int32, for events: UInt32) async -> UInt32 {
        await withCheckedContinuation { continuation in
            waiters.withLock { $0[descriptor] = continuation }
            // One-shot: armed for every wait, so a wake-up is never left over for the next one.
            if passion_epoll_arm(epoll, descriptor, events) != 0 {
                // Not a socket we can watch (closed under us).
                if let waiting = waiters.withLock({ $0.removeValue(forKey: descriptor) }) {
                    waiting.resume(returning: Self.unwatchable)
                }
            }
        }
    }

    /// Stops watching `descriptor`; call before the connection closes it, since the number may
    /// be reused by the next socket.
    func forget(_ descriptor: Int32) {
        _ = passion_epoll_forget(epoll, descriptor)
        let waiting = waiters.withLock { $0.removeValue(forKey: descriptor) }
        waiting?.resume(returning: passion_epoll_error)
    }

    private func run() {
        passion_name_thread("passion-pg-loop")
        thread.store(UInt(pthread_self()), ordering: .relaxed)
        var descriptors = [Int32](repeating: 0, count: 64)
        var flags = [UInt32](repeating: 0, count: 64)
        let executor = asUnownedTaskExecutor()
        while true {
            for job in jobs.withLock({ queued -> [UnownedJob] in defer { queued.removeAll(keepingCapacity: true) }; return queued }) {
                job.runSynchronously(on: executor)
            }
            sleeping.store(true, ordering: .sequentiallyConsistent)
            let idle = jobs.withLock { $0.isEmpty }
            let count = Int(passion_epoll_wait(epoll, &descriptors, &flags, idle ? -1 : 0))
            sleeping.store(false, ordering: .sequentiallyConsistent)
            guard count > 0 else { continue }  // timeout or EINTR
            var ready: [(CheckedContinuation<UInt32, Never>, UInt32)] = []
            waiters.withLock { waiters in
                for index in 0..<count where descriptors[index] != waker {
                    if let continuation = waiters.removeValue(forKey: descriptors[index]) { ready.append((continuation, flags[index])) }
                }
            }
            if descriptors[0..<count].contains(waker) { passion_drain_waker(waker) }
            // A task that prefers this executor is queued here, to run on the next turn.
            for (continuation, events) in ready { continuation.resume(returning: events) }
        }
    }
}
