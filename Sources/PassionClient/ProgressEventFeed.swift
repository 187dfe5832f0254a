import Foundation

/// What a progress event feed reports, in order.
public enum ProgressFeedUpdate: Sendable {
    /// The subscription is live (after any catch-up): nothing committed from now on is missed.
    /// Comes after the first subscribe and after every reconnect.
    case live(lastEventID: Int64)
    /// One event, each exactly once, in the order the server sent them.
    case event(ProgressEvent)
    /// The stream broke (connection lost, server restarting); the feed subscribes again after
    /// the last event id and reports `.live` once caught up.
    case interrupted(RPCError)
}

/// How a feed reconnects.
public struct FeedReconnectPolicy: Sendable {
    /// Delay before the n-th reconnect in a row (reset once a subscription is live).
    public var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
    /// Consecutive failed reconnects before the feed gives up with the last error; nil: never.
    public var maxAttempts: Int? = nil

    public init() {}
}

extension PassionAPI.Progress.Client {
    /// `Subscribe` for real clients: reconnects after a broken stream and resumes after the last
    /// event id it delivered, so events arrive without gap or repeat; `.live` says when the
    /// subscription is established; cancelling the consuming task ends the sequence without an
    /// error. Errors that a retry cannot fix end it with that error: a refused credential or
    /// request, or a resume point the server no longer keeps (OUT_OF_RANGE `RESUME_TOO_OLD`:
    /// read `GetProgress` and start a new feed).
    ///
    /// `request.afterEventID` is where the first subscription starts (0: live events only).
    public func events(
        _ request: SubscribeRequest = SubscribeRequest(), options: CallOptions = .defaults,
        reconnect: FeedReconnectPolicy = FeedReconnectPolicy()
    ) -> AsyncThrowingStream<ProgressFeedUpdate, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: ProgressFeedUpdate.self)
        let feed = Task {
            var state = ProgressFeedState(after: request.afterEventID)
            var failures = 0
            while !Task.isCancelled {
                do {
                    var subscription = request
                    subscription.afterEventID = state.after
                    for try await response in try await subscribe(subscription, options: options) {
                        for update in state.receive(response) {
                            if case .live = update { failures = 0 }
                            continuation.yield(update)
                        }
                    }
                    // A server never ends Subscribe with OK; treat it as a break.
                    throw RPCError(code: .unavailable, message: "the event stream ended")
                } catch {
                    if Task.isCancelled { break }
                    // Anything but a status (a response that does not decode) would fail again.
                    guard let rpcError = error as? RPCError else {
                        continuation.finish(throwing: error)
                        return
                    }
                    failures += 1
                    guard ProgressFeedState.isRetryable(rpcError), reconnect.maxAttempts.map({ failures <= $0 }) ?? true else {
                        continuation.finish(throwing: rpcError)
                        return
                    }
                    state.interrupted()
                    continuation.yield(.interrupted(rpcError))
                    do {
                        try await Task.sleep(for: reconnect.backoff.delay(attempt: failures - 1))
                    } catch {
                        break
                    }
                }
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in feed.cancel() }
        return stream
    }
}

/// The feed's bookkeeping, apart from I/O: where to resume, which events were delivered.
struct ProgressFeedState {
    /// Resume after this id.
    private(set) var after: Int64
    private var isLive = false
    /// Ids delivered, for feeds of all users, whose events can commit out of id order (the
    /// server may then replay one above `after`); bounded.
    private var delivered: Set<Int64> = []
    private var deliveredOrder: [Int64] = []
    static let rememberedIDs = 10_000

    init(after: Int64) {
        self.after = after
    }

    mutating func receive(_ response: SubscribeResponse) -> [ProgressFeedUpdate] {
        switch response.item {
        case .event(let event):
            guard !delivered.contains(event.id) else { return [] }
            remember(event.id)
            after = max(after, event.id)
            return [.event(event)]
        case .heartbeat(let beat):
            guard !isLive else { return [] }
            isLive = true
            after = max(after, beat.lastEventID)
            return [.live(lastEventID: after)]
        case nil:
            return []
        }
    }

    /// The stream broke: the next subscription resumes after the last id delivered and reports
    /// `.live` again once caught up.
    mutating func interrupted() {
        isLive = false
    }

    private mutating func remember(_ id: Int64) {
        delivered.insert(id)
        deliveredOrder.append(id)
        if deliveredOrder.count > Self.rememberedIDs {
            let dropped = deliveredOrder.prefix(Self.rememberedIDs / 2)
            for id in dropped { delivered.remove(id) }
            deliveredOrder.removeFirst(dropped.count)
        }
    }

    /// Broken streams, servers going away and rate limits are retried; refusals, resume points
    /// out of range and errors that would repeat (INTERNAL, UNKNOWN) are the caller's to handle.
    static func isRetryable(_ error: RPCError) -> Bool {
        switch error.code {
        case .unavailable, .deadlineExceeded, .resourceExhausted, .aborted, .cancelled: true
        default: false
        }
    }
}
