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
    /// The feed reads from the server only when its consumer asks for the next update, so a slow
    /// consumer holds the server back through flow control instead of piling events up in memory.
    ///
    /// `request.afterEventID` is where the first subscription starts (0: live events only).
    public func events(
        _ request: SubscribeRequest = SubscribeRequest(), options: CallOptions = .defaults,
        reconnect: FeedReconnectPolicy = FeedReconnectPolicy()
    ) -> ProgressEventFeed {
        ProgressEventFeed(client: self, request: request, options: options, reconnect: reconnect)
    }
}

/// The updates of `Progress.Client.events`: each iteration runs its own subscription.
public struct ProgressEventFeed: AsyncSequence, Sendable {
    public typealias Element = ProgressFeedUpdate

    let client: PassionAPI.Progress.Client
    let request: SubscribeRequest
    let options: CallOptions
    let reconnect: FeedReconnectPolicy

    public func makeAsyncIterator() -> AsyncIterator {
        let client = self.client
        let options = self.options
        return AsyncIterator(driver: FeedDriver(request: request, reconnect: reconnect) { subscription in
            try await client.subscribe(subscription, options: options)
        })
    }

    /// Pulls the next update, subscribing again after a break.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var driver: FeedDriver<ResponseStream<SubscribeResponse>>

        public mutating func next() async throws -> ProgressFeedUpdate? {
            try await driver.next()
        }
    }
}

/// The feed's loop apart from the transport, which a test replaces with a scripted source: it
/// subscribes on demand, turns responses into updates and reconnects after a backoff.
struct FeedDriver<Responses: AsyncSequence> where Responses.Element == SubscribeResponse {
    private let subscribe: (SubscribeRequest) async throws -> Responses
    private let request: SubscribeRequest
    private let reconnect: FeedReconnectPolicy
    private let sleep: (Duration) async throws -> Void
    private var state: ProgressFeedState
    private var responses: Responses.AsyncIterator?
    /// Updates from one response not yet handed out (at most a few).
    private var pending: [ProgressFeedUpdate] = []
    private var failures = 0
    /// The wait before the next subscription, after a break was reported.
    private var backoff: Duration?
    private var finished = false

    init(
        request: SubscribeRequest, reconnect: FeedReconnectPolicy,
        sleep: @escaping (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        subscribe: @escaping (SubscribeRequest) async throws -> Responses
    ) {
        self.request = request
        self.reconnect = reconnect
        self.sleep = sleep
        self.subscribe = subscribe
        self.state = ProgressFeedState(after: request.afterEventID)
    }

    mutating func next() async throws -> ProgressFeedUpdate? {
        while true {
            if !pending.isEmpty { return pending.removeFirst() }
            // A consumer cancelled before asking gets the end, not a subscription opened to be dropped.
            guard !finished, !Task.isCancelled else {
                finished = true
                return nil
            }
            do {
                if let delay = backoff {
                    backoff = nil
                    try await sleep(delay)
                }
                var iterator = try await openedResponses()
                // Taken out while waiting: a failure drops it, which cancels that subscription.
                responses = nil
                guard let response = try await iterator.next() else {
                    // A server never ends Subscribe with OK; treat it as a break.
                    throw RPCError(code: .unavailable, message: "the event stream ended")
                }
                responses = iterator
                for update in state.receive(response) {
                    if case .live = update { failures = 0 }
                    pending.append(update)
                }
            } catch {
                if let interruption = try interrupted(by: error) { return interruption }
                return nil
            }
        }
    }

    private mutating func openedResponses() async throws -> Responses.AsyncIterator {
        if let responses { return responses }
        var subscription = request
        subscription.afterEventID = state.after
        return try await subscribe(subscription).makeAsyncIterator()
    }

    /// A subscription failed: `.interrupted` when it will be retried, nil when the consumer was
    /// cancelled; otherwise the feed ends with the error.
    private mutating func interrupted(by error: any Error) throws -> ProgressFeedUpdate? {
        responses = nil
        guard !Task.isCancelled else {
            finished = true
            return nil
        }
        // Anything but a status (a response that does not decode) would fail again.
        guard let rpcError = error as? RPCError else {
            finished = true
            throw error
        }
        failures += 1
        guard ProgressFeedState.isRetryable(rpcError), reconnect.maxAttempts.map({ failures <= $0 }) ?? true else {
            finished = true
            throw rpcError
        }
        state.interrupted()
        backoff = reconnect.backoff.delay(attempt: failures - 1)
        return .interrupted(rpcError)
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
