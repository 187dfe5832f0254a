@testable import PassionClient
import Testing

/// The feed's loop against scripted subscriptions: no server, no sleeps (the backoff is recorded).
@Suite("Progress events: the feed's loop")
struct FeedDriverTests {
    /// One scripted subscription: its responses, then either the end or an error.
    struct Script {
        var responses: [SubscribeResponse]
        var failure: RPCError?
    }

    /// Hands out the scripts in order and counts what the feed pulled.
    final class Source {
        var scripts: [Script]
        var subscriptions: [SubscribeRequest] = []
        var pulls = 0

        init(_ scripts: [Script]) {
            self.scripts = scripts
        }

        func subscribe(_ request: SubscribeRequest) throws -> Responses {
            subscriptions.append(request)
            guard !scripts.isEmpty else { throw RPCError(code: .unavailable, message: "no more scripts") }
            return Responses(source: self, script: scripts.removeFirst())
        }
    }

    struct Responses: AsyncSequence {
        typealias Element = SubscribeResponse
        let source: Source
        let script: Script

        struct AsyncIterator: AsyncIteratorProtocol {
            let source: Source
            var script: Script

            mutating func next() async throws -> SubscribeResponse? {
                source.pulls += 1
                if !script.responses.isEmpty { return script.responses.removeFirst() }
                if let failure = script.failure { throw failure }
                return nil
            }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: source, script: script) }
    }

    static func heartbeat(_ id: Int64) -> SubscribeResponse { .with { $0.heartbeat.lastEventID = id } }
    static func event(_ id: Int64) -> SubscribeResponse { .with { $0.event.id = id } }

    static func describe(_ update: ProgressFeedUpdate?) -> String {
        switch update {
        case .live(let id)?: "live \(id)"
        case .event(let event)?: "event \(event.id)"
        case .interrupted(let error)?: "interrupted \(error.code.name)"
        case nil: "end"
        }
    }

    @Test("the feed reads a response only when its consumer asks: a slow consumer leaves events with the server")
    func readsOnDemand() async throws {
        let source = Source([Script(responses: [Self.heartbeat(0)] + (1...1000).map { Self.event($0) })])
        var driver = FeedDriver(request: SubscribeRequest(), reconnect: FeedReconnectPolicy()) { try source.subscribe($0) }
        #expect(Self.describe(try await driver.next()) == "live 0")
        #expect(Self.describe(try await driver.next()) == "event 1")
        #expect(Self.describe(try await driver.next()) == "event 2")
        #expect(source.pulls == 3)
    }

    @Test("a break is reported, then after the backoff the feed subscribes after the last id; a replayed event is skipped")
    func resumesAfterABreak() async throws {
        let source = Source([
            Script(responses: [Self.heartbeat(0), Self.event(1), Self.event(2)], failure: RPCError(code: .unavailable, message: "cut")),
            Script(responses: [Self.event(2), Self.heartbeat(2), Self.event(3)]),
        ])
        var slept: [Duration] = []
        var reconnect = FeedReconnectPolicy()
        reconnect.backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        var driver = FeedDriver(request: SubscribeRequest(), reconnect: reconnect, sleep: { slept.append($0) }) {
            try source.subscribe($0)
        }
        var updates: [String] = []
        for _ in 0..<7 { updates.append(Self.describe(try await driver.next())) }
        #expect(updates == ["live 0", "event 1", "event 2", "interrupted UNAVAILABLE", "live 2", "event 3", "interrupted UNAVAILABLE"])
        #expect(source.subscriptions.map(\.afterEventID) == [0, 2])
        // One wait, before the second subscription: full jitter, within the first attempt's ceiling.
        #expect(slept.count == 1 && slept.allSatisfy { $0 >= .zero && $0 <= .milliseconds(100) }, "\(slept)")
    }

    @Test("a consumer cancelled before it asks gets the end, and no subscription is opened")
    func cancelledBeforeAsking() async throws {
        let (update, subscriptions) = try await Task { () -> (String, Int) in
            withUnsafeCurrentTask { $0?.cancel() }
            let source = Source([Script(responses: [Self.heartbeat(0)])])
            var driver = FeedDriver(request: SubscribeRequest(), reconnect: FeedReconnectPolicy()) { try source.subscribe($0) }
            return (Self.describe(try await driver.next()), source.subscriptions.count)
        }.value
        #expect(update == "end")
        #expect(subscriptions == 0)
    }

    @Test("an error a retry cannot fix ends the feed with it, and the feed stays ended")
    func refusalEnds() async throws {
        let source = Source([Script(responses: [], failure: RPCError(code: .unauthenticated, message: "no"))])
        var driver = FeedDriver(request: SubscribeRequest(), reconnect: FeedReconnectPolicy()) { try source.subscribe($0) }
        await #expect(throws: RPCError.self) { try await driver.next() }
        #expect(try await driver.next() == nil)
        #expect(source.subscriptions.count == 1)
    }

    @Test("maxAttempts bounds consecutive failed reconnects; the last error ends the feed")
    func maxAttempts() async throws {
        let source = Source([])
        var reconnect = FeedReconnectPolicy()
        reconnect.maxAttempts = 2
        var driver = FeedDriver(request: SubscribeRequest(), reconnect: reconnect, sleep: { _ in }) { try source.subscribe($0) }
        #expect(Self.describe(try await driver.next()) == "interrupted UNAVAILABLE")
        #expect(Self.describe(try await driver.next()) == "interrupted UNAVAILABLE")
        await #expect(throws: RPCError.self) { try await driver.next() }
        #expect(source.subscriptions.count == 3)
    }
}
