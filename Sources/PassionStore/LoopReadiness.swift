import CLibPQ
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// Waits for libpq's sockets on the SwiftNIO event loop that runs the caller, so an answer
/// resumes the caller on the thread that saw it arrive.
///
/// A statement sent by a handler on an event loop used to wait on a `PostgresPoller`: that
/// thread woke for the answer, then woke the event loop to resume the handler, two thread
/// wake-ups per statement where one does (on this machine a wake-up costs 30–40 µs of CPU).
/// NIO cannot watch a descriptor it does not read, so the kernel watches it: every wait is a
/// one-shot Linux AIO poll that signals this loop's eventfd when the socket is ready, and the
/// loop reads that eventfd as a pipe channel. Where the kernel refuses AIO (an old kernel, a
/// seccomp profile without it), or the caller is not on an event loop, the poller waits as
/// before.
///
/// `@unchecked Sendable`: everything but the shared map of loops is touched only on the
/// watcher's own loop (waits check it; completions arrive as that loop's channel reads).
final class LoopReadiness: @unchecked Sendable {
    private enum State {
        case starting(EventLoopFuture<Void>)
        case ready(LoopReadiness)
    }

    private static let watchers = Mutex<[ObjectIdentifier: State]>([:])
    /// Whether the kernel grants AIO polls here; checked once.
    private static let supported = passion_aio_supported() != 0

    /// Requests a loop's context holds at once; a wait beyond it uses the poller.
    private static let capacity: UInt32 = 256

    let loop: any EventLoop
    private let context: UInt64
    private let signal: Int32
    /// What to do when each pending poll completes, by its request's key.
    private var waiting: [UInt64: (UInt32) -> Void] = [:]
    private var keys = [UInt64](repeating: 0, count: 64)
    private var results = [Int64](repeating: 0, count: 64)
    private var closed = false
    /// Waits this watcher has answered (tests read it from other threads).
    private let answeredCount = Atomic<Int>(0)

    private init(loop: any EventLoop, context: UInt64, signal: Int32) {
        self.loop = loop
        self.context = context
        self.signal = signal
    }

    /// Waits until `descriptor` is ready for `events` (or hung up, or in error) and returns
    /// what it is ready for; nil when this caller cannot wait here, and should ask the poller.
    static func wait(_ descriptor: Int32, for events: UInt32) async -> UInt32? {
        guard let watcher = forCurrentLoop() else { return nil }
        return await watcher.wait(descriptor, for: events)
    }

    /// Starts `loop`'s watcher unless it has one, and returns when it watches, or when this
    /// kernel cannot (every wait then uses the poller). Without it a loop's watcher starts at
    /// its first statement, which the poller serves, like any that comes while it starts.
    static func prepare(_ loop: any EventLoop) async {
        switch state(of: loop) {
        case .starting(let started): try? await started.get()
        case .ready, nil: return
        }
    }

    /// Whether the caller runs on an event loop whose watcher is watching: its statements'
    /// answers then resume it where it is.
    static var watchesCaller: Bool { forCurrentLoop() != nil }

    /// Whether `loop` has a watcher that is watching.
    static func isWatching(_ loop: any EventLoop) -> Bool {
        watcher(of: loop) != nil
    }

    /// Waits answered on `loop` since its watcher started.
    static func answered(on loop: any EventLoop) -> Int {
        watcher(of: loop)?.answeredCount.load(ordering: .relaxed) ?? 0
    }

    static func watcher(of loop: any EventLoop) -> LoopReadiness? {
        guard case .ready(let watcher) = watchers.withLock({ $0[ObjectIdentifier(loop)] }) else { return nil }
        return watcher
    }

    /// The watcher of the event loop running the caller, if it watches yet.
    static func forCurrentLoop() -> LoopReadiness? {
        guard let loop = MultiThreadedEventLoopGroup.currentEventLoop, case .ready(let watcher) = state(of: loop) else { return nil }
        return watcher
    }

    /// `loop`'s state, its watcher started if it had none; nil where the kernel grants no AIO.
    private static func state(of loop: any EventLoop) -> State? {
        guard supported else { return nil }
        let id = ObjectIdentifier(loop)
        let (state, starting) = watchers.withLock { watchers -> (State, EventLoopPromise<Void>?) in
            if let state = watchers[id] { return (state, nil) }
            let promise = loop.makePromise(of: Void.self)
            watchers[id] = .starting(promise.futureResult)
            return (.starting(promise.futureResult), promise)
        }
        if let starting { start(on: loop, id: id, promise: starting) }
        return state
    }

    private static func start(on loop: any EventLoop, id: ObjectIdentifier, promise: EventLoopPromise<Void>) {
        var context: UInt64 = 0
        let signal = passion_eventfd()
        guard signal >= 0, passion_aio_setup(capacity, &context) == 0 else {
            // Out of descriptors or of the system's AIO requests (fs.aio-max-nr): a later
            // statement tries again; this one and those meanwhile use the poller.
            if signal >= 0 { close(signal) }
            _ = watchers.withLock { $0.removeValue(forKey: id) }
            promise.succeed()
            return
        }
        let watcher = LoopReadiness(loop: loop, context: context, signal: signal)
        let created = context
        NIOPipeBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(SignalReader(watcher: watcher, id: id))
                }
            }
            .takingOwnershipOfDescriptor(input: signal)
            .whenComplete { result in
                switch result {
                case .success:
                    watchers.withLock { $0[id] = .ready(watcher) }
                case .failure:
                    // A loop that is shutting down refuses it; its statements use the poller.
                    passion_aio_destroy(created)
                    _ = watchers.withLock { $0.removeValue(forKey: id) }
                }
                promise.succeed()
            }
    }

    private func wait(_ descriptor: Int32, for events: UInt32) async -> UInt32? {
        await withCheckedContinuation { continuation in
            // A task preferring this loop's executor is still on its thread here; a task merely
            // started on it may have hopped to the global executor on the way, and asks the poller.
            guard loop.inEventLoop, watch(descriptor, for: events, then: { continuation.resume(returning: $0) }) else {
                return continuation.resume(returning: nil)
            }
        }
    }

    /// Calls `ready` on this loop once `descriptor` is ready for `events` (or hung up, or in
    /// error: `PostgresPoller.unwatchable` when it cannot be watched at all). False when this
    /// watcher cannot take the request (closed, or full): `ready` is then never called. Call it
    /// on the loop.
    func watch(_ descriptor: Int32, for events: UInt32, then ready: @escaping (UInt32) -> Void) -> Bool {
        guard !closed, waiting.count < Int(Self.capacity) else { return false }
        let key = passion_aio_poll(context, descriptor, events, signal)
        guard key != 0 else { return false }
        waiting[key] = ready
        return true
    }

    /// Resumes the waits whose sockets are ready: called on the loop when the eventfd fires.
    fileprivate func reap() {
        while true {
            let count = Int(passion_aio_reap(context, &keys, &results))
            guard count > 0 else { return }
            for index in 0..<count {
                let key = keys[index]
                let result = results[index]
                passion_aio_free(key)
                // A negative result is an errno: the socket cannot be watched, which the
                // connection reports as broken.
                waiting.removeValue(forKey: key)?(result < 0 ? PostgresPoller.unwatchable : UInt32(truncatingIfNeeded: result))
                answeredCount.add(1, ordering: .relaxed)
            }
            if count < keys.count { return }
        }
    }

    /// The loop is closing: later waits use the poller, and waits still pending learn their
    /// socket cannot be watched (their tasks' executor is going away with the loop).
    fileprivate func shutDown(id: ObjectIdentifier) {
        closed = true
        Self.watchers.withLock { watchers in
            if case .ready(let watcher) = watchers[id], watcher === self { watchers[id] = nil }
        }
        passion_aio_destroy(context)
        let pending = waiting
        waiting = [:]
        for (key, ready) in pending {
            passion_aio_free(key)
            ready(PostgresPoller.unwatchable)
        }
    }
}

/// Reads the eventfd the kernel signals when a watched socket is ready.
private final class SignalReader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let watcher: LoopReadiness
    private let id: ObjectIdentifier

    init(watcher: LoopReadiness, id: ObjectIdentifier) {
        self.watcher = watcher
        self.id = id
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        watcher.reap()
    }

    func channelInactive(context: ChannelHandlerContext) {
        watcher.shutDown(id: id)
        context.fireChannelInactive()
    }
}
