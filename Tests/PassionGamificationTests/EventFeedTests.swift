import Foundation
import NIOCore
import PassionServerAPI
@testable import PassionClient
import PassionRPCServer
import PassionTestSupport
import Synchronization
import Testing

/// `progress.events`, the client's resuming Subscribe, against a real server whose connection
/// the test cuts. The time limit guards against a hang, not a slow machine: these tests take
/// about 20 s while the whole suite runs at once, and one passed the minute in a loaded CI run
/// where unrelated tests took 66 s.
@Suite("Progress events: the client's feed", .timeLimit(.minutes(2)))
struct EventFeedTests {
    /// Carries calls over a real connection that the test can cut; the next call opens another.
    final class CuttableTransport: RPCClientTransport {
        let server: TestServer
        private let current: Mutex<ClientConnection?> = Mutex(nil)

        init(server: TestServer) {
            self.server = server
        }

        /// While cut, new calls wait here until `reconnect()`: nil when open.
        private let waiting: Mutex<[CheckedContinuation<Void, Never>]?> = Mutex(nil)

        private func connection() async throws -> ClientConnection {
            await withCheckedContinuation { continuation in
                let open = waiting.withLock { list -> Bool in
                    guard list != nil else { return true }
                    list?.append(continuation)
                    return false
                }
                if open { continuation.resume() }
            }
            if let open = current.withLock({ $0 }), open.isUsable { return open }
            let fresh = try await server.connect()
            current.withLock { $0 = fresh }
            return fresh
        }

        /// Closes the connection under the open streams, as a network failure would; new calls
        /// wait until `reconnect()`.
        func cut() async {
            waiting.withLock { if $0 == nil { $0 = [] } }
            await current.withLock { $0 }?.close()
        }

        func close() async {
            await current.withLock { $0 }?.close()
        }

        func reconnect() {
            let released = waiting.withLock { list in
                defer { list = nil }
                return list ?? []
            }
            for continuation in released { continuation.resume() }
        }

        func unary(_ method: MethodDescriptor, request: ByteBuffer, options: CallOptions) async throws -> UnaryResponse {
            try await connection().unary(method, request: request, options: options)
        }

        func serverStreaming(_ method: MethodDescriptor, request: ByteBuffer, options: CallOptions) async throws -> StreamingResponse {
            try await connection().serverStreaming(method, request: request, options: options)
        }

        func clientStreaming(
            _ method: MethodDescriptor, options: CallOptions, requests: @Sendable (MessageWriter) async throws -> Void
        ) async throws -> UnaryResponse {
            try await connection().clientStreaming(method, options: options, requests: requests)
        }

        func bidirectional<Result: Sendable>(
            _ method: MethodDescriptor, options: CallOptions, body: @Sendable (MessageWriter, StreamingResponse) async throws -> Result
        ) async throws -> Result {
            try await connection().bidirectional(method, options: options, body: body)
        }
    }

    /// Reads the feed until `done` says so, returning every update seen.
    static func read(
        _ iterator: inout ProgressEventFeed.AsyncIterator,
        until done: (ProgressFeedUpdate) -> Bool
    ) async throws -> [ProgressFeedUpdate] {
        var updates: [ProgressFeedUpdate] = []
        while let update = try await iterator.next() {
            updates.append(update)
            if done(update) { break }
        }
        return updates
    }

    static func isLive(_ update: ProgressFeedUpdate) -> Bool { if case .live = update { true } else { false } }

    static func events(_ updates: [ProgressFeedUpdate]) -> [Int64] {
        updates.compactMap { if case .event(let event) = $0 { event.id } else { nil } }
    }

    @Test("live, then events; a cut connection is reported, the feed resumes after the last id: every event once, in order")
    func resumesAcrossACut() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let transport = CuttableTransport(server: harness.server)
            var reconnect = FeedReconnectPolicy()
            reconnect.backoff = Backoff(initial: .milliseconds(50), maximum: .milliseconds(200))
            let feed = transport.progress.events(options: .session(user.token), reconnect: reconnect)
            var iterator = feed.makeAsyncIterator()
            _ = try await Self.read(&iterator, until: Self.isLive)

            let before = try await SubscribeTests.award(harness, user.id, 1_000)
            var updates = try await Self.read(&iterator) { Self.events([$0]).first == before.events.last?.id }
            await transport.cut()
            updates += try await Self.read(&iterator) { if case .interrupted = $0 { true } else { false } }
            // Awarded while the feed is cut off: only its resume can bring these.
            let during = try await SubscribeTests.award(harness, user.id, 7)
            transport.reconnect()
            updates += try await Self.read(&iterator) { Self.events([$0]).first == during.events.last?.id }
            let after = try await SubscribeTests.award(harness, user.id, 9)
            updates += try await Self.read(&iterator) { Self.events([$0]).first == after.events.last?.id }

            let expected = (before.events + during.events + after.events).map(\.id)
            #expect(Self.events(updates) == expected)
            #expect(updates.filter { if case .interrupted = $0 { true } else { false } }.count == 1)
            #expect(updates.contains(where: Self.isLive))
        }
    }

    @Test("a feed that had seen no event before a cut still gets what happened during it")
    func quietThenCut() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            _ = try await SubscribeTests.award(harness, user.id, 5)  // before the feed: not owed
            let transport = CuttableTransport(server: harness.server)
            let feed = transport.progress.events(options: .session(user.token))
            var iterator = feed.makeAsyncIterator()
            _ = try await Self.read(&iterator, until: Self.isLive)
            await transport.cut()
            _ = try await Self.read(&iterator) { if case .interrupted = $0 { true } else { false } }
            let during = try await SubscribeTests.award(harness, user.id, 7)
            transport.reconnect()
            let updates = try await Self.read(&iterator) { Self.events([$0]).first == during.events.last?.id }
            #expect(Self.events(updates) == during.events.map(\.id))
        }
    }

    @Test("a user's heartbeat moves past other users' events, so a quiet user's resume point never grows old")
    func heartbeatsMove() async throws {
        try await ServiceHarness.with { harness in
            let quiet = try await harness.signIn()
            let busy = try await harness.signIn()
            let stream = try await harness.connection.progress.subscribe(
                SubscribeRequest.with { $0.heartbeatSeconds = 1 }, options: .session(quiet.token))
            var iterator = stream.makeAsyncIterator()
            let first = try await iterator.next()
            guard case .heartbeat(let initial)? = first?.item else {
                Issue.record("the first message is not the live heartbeat")
                return
            }
            // An award for someone else, then the next heartbeat; again while the event listener
            // may still be starting (a notification sent before it listens is not seen).
            var moved = false
            for _ in 0..<30 where !moved {
                let other = try await SubscribeTests.award(harness, busy.id, 5)
                let newest = try #require(other.events.last?.id)
                #expect(initial.lastEventID < newest)
                while let item = try await iterator.next() {
                    if case .event? = item.item { Issue.record("the quiet user got another user's event") }
                    if case .heartbeat(let beat)? = item.item {
                        moved = beat.lastEventID >= newest
                        break
                    }
                }
            }
            #expect(moved)
        }
    }

    @Test("cancelling the consuming task ends the feed without an error")
    func cancellation() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let transport = CuttableTransport(server: harness.server)
            let live = AsyncStream.makeStream(of: Void.self)
            let consumer = Task {
                var seen = 0
                for try await update in transport.progress.events(options: .session(user.token)) {
                    if Self.isLive(update) { live.continuation.yield() }
                    seen += 1
                }
                return seen
            }
            for await _ in live.stream { break }
            consumer.cancel()
            let seen = try await consumer.value  // throws if the feed surfaced the cancellation
            #expect(seen >= 1)
            await transport.close()
        }
    }

    @Test("a refused credential is not retried: the feed ends with UNAUTHENTICATED")
    func refusal() async throws {
        try await ServiceHarness.with { harness in
            let transport = CuttableTransport(server: harness.server)
            let error = await expectRPCError(.unauthenticated) {
                for try await _ in transport.progress.events(options: .session("not-a-token")) {}
            }
            #expect(error != nil)
            await transport.close()
        }
    }

    @Test("the feed's bookkeeping: an event seen twice is delivered once; live once per subscription")
    func state() {
        var state = ProgressFeedState(after: 0)
        let event = SubscribeResponse.with { $0.event = ProgressEvent.with { $0.id = 5 } }
        let beat = SubscribeResponse.with { $0.heartbeat = Heartbeat.with { $0.lastEventID = 5 } }
        #expect(state.receive(beat).count == 1)
        #expect(state.receive(beat).isEmpty)
        #expect(state.receive(event).count == 1)
        #expect(state.receive(event).isEmpty)
        #expect(state.after == 5)
        state.interrupted()
        #expect(state.receive(beat).count == 1)
        #expect(!ProgressFeedState.isRetryable(RPCError(code: .outOfRange, message: "too old")))
        #expect(ProgressFeedState.isRetryable(RPCError(code: .unavailable, message: "gone")))
    }
}
