import NIOCore
import PassionTLS
import PassionWire
import Synchronization

/// What a handler knows about its call, and where it puts response metadata.
public final class ServerContext: Sendable {
    public let method: MethodDescriptor
    /// Metadata the client sent with the call.
    public let requestMetadata: Metadata
    /// When the call must end; nil when the client set no deadline.
    public let deadline: ContinuousClock.Instant?
    /// The client's address, for logs and audit.
    public let peer: String
    /// The names in the client's certificate when the client authenticated with mTLS.
    public let peerCertificate: PeerCertificateNames?

    private struct Mutable {
        var initial = Metadata()
        var trailing = Metadata()
        var principal = Principal.anonymous
        var compressResponses = true
        var shuttingDown = false
        var nextWaiter: UInt64 = 0
        var shutdownWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        /// Waiters cancelled before they were registered.
        var cancelledWaiters: Set<UInt64> = []
    }

    private let mutable = Mutex(Mutable())

    init(
        method: MethodDescriptor, requestMetadata: Metadata, deadline: ContinuousClock.Instant?, peer: String,
        peerCertificate: PeerCertificateNames?
    ) {
        self.method = method
        self.requestMetadata = requestMetadata
        self.deadline = deadline
        self.peer = peer
        self.peerCertificate = peerCertificate
    }

    /// Metadata sent in a HEADERS frame before the first response message (or the status).
    /// Changes after the first message is written are not sent.
    public var initialMetadata: Metadata {
        get { mutable.withLock { $0.initial } }
        set { mutable.withLock { $0.initial = newValue } }
    }

    /// Metadata sent with the final status.
    public var trailingMetadata: Metadata {
        get { mutable.withLock { $0.trailing } }
        set { mutable.withLock { $0.trailing = newValue } }
    }

    /// Who is calling; set by the server before the handler runs.
    public internal(set) var principal: Principal {
        get { mutable.withLock { $0.principal } }
        set { mutable.withLock { $0.principal = newValue } }
    }

    /// Whether response messages above the negotiated threshold are compressed. Default true;
    /// a handler turns it off for responses that mix secrets with caller-chosen data.
    public var compressResponses: Bool {
        get { mutable.withLock { $0.compressResponses } }
        set { mutable.withLock { $0.compressResponses = newValue } }
    }

    /// Whether the server has begun shutting down. Long-lived streaming handlers (subscriptions)
    /// should end with a status the client can resume from, rather than hold the shutdown for
    /// its whole grace period.
    public var isShuttingDown: Bool { mutable.withLock { $0.shuttingDown } }

    /// Returns once the server begins shutting down (at once if it has), or when the calling
    /// task is cancelled.
    public func shutdownRequested() async {
        let id = mutable.withLock { state -> UInt64 in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = mutable.withLock { state -> Bool in
                    if state.shuttingDown || state.cancelledWaiters.remove(id) != nil { return true }
                    state.shutdownWaiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = mutable.withLock { state -> CheckedContinuation<Void, Never>? in
                if let waiter = state.shutdownWaiters.removeValue(forKey: id) { return waiter }
                state.cancelledWaiters.insert(id)
                return nil
            }
            waiter?.resume()
        }
    }

    /// The server is shutting down: wakes every `shutdownRequested()`.
    func requestShutdown() {
        let waiters = mutable.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.shuttingDown = true
            defer { state.shutdownWaiters = [:] }
            return Array(state.shutdownWaiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Time left before the deadline; nil without one.
    public var remainingTime: Duration? {
        deadline.map { $0 - .now }
    }
}
