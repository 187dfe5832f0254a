import Foundation
import Logging
import PassionServerAPI
import PassionClient
import PassionIdentity
import PassionRPCServer
import PassionServices
import PassionStore
import PassionTestSupport
import Testing

@Suite("Progress events: Subscribe")
struct SubscribeTests {
    static let writer = ServiceHarness.service("progress")

    static func award(_ harness: ServiceHarness, _ user: String, _ points: Int32, key: String = UUID().uuidString) async throws -> RewardResult {
        try await harness.connection.progress.awardXP(options: writer) {
            $0.userID = user
            $0.points = points
            $0.reason = "grant"
            $0.idempotencyKey = key
        }
    }

    /// Reads events (skipping heartbeats) until `count` arrived.
    static func next(_ count: Int, from iterator: inout ResponseStream<SubscribeResponse>.AsyncIterator) async throws -> [ProgressEvent] {
        var events: [ProgressEvent] = []
        while events.count < count, let item = try await iterator.next() {
            if case .event(let event)? = item.item { events.append(event) }
        }
        return events
    }

    /// Waits until the subscription is registered: a heartbeat proves the handler runs.
    static func waitForHeartbeat(_ iterator: inout ResponseStream<SubscribeResponse>.AsyncIterator) async throws {
        while let item = try await iterator.next() {
            if case .heartbeat? = item.item { return }
        }
    }

    @Test("a subscriber receives the award, the level-up and the unlocks in the order they happened")
    func ordered() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let stream = try await harness.connection.progress.subscribe(
                SubscribeRequest.with { $0.heartbeatSeconds = 1 }, options: .session(user.token))
            var iterator = stream.makeAsyncIterator()
            try await Self.waitForHeartbeat(&iterator)
            let result = try await Self.award(harness, user.id, 1_000)
            let received = try await Self.next(result.events.count, from: &iterator)
            #expect(received.map(\.id) == result.events.map(\.id))
            #expect(received.map(\.type) == result.events.map(\.type))
            #expect(received.first?.type == .xpAwarded)
            #expect(received.contains { $0.type == .levelUp && $0.toLevel == 5 })
            #expect(received.filter { $0.type == .achievementUnlocked }.count == 3)
            let heartbeat = try await iterator.next()
            if case .heartbeat(let beat)? = heartbeat?.item { #expect(beat.lastEventID == result.events.last?.id) }
        }
    }

    @Test("a client that reconnects resumes after the last id it saw: no gap, no repeat; too old a resume point is refused")
    func resume() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let progress = harness.connection.progress
            let first = try await Self.award(harness, user.id, 5)
            // Disconnected: these happen while nobody listens.
            let missed = [try await Self.award(harness, user.id, 7), try await Self.award(harness, user.id, 9)]
            let lastSeen = try #require(first.events.last?.id)
            let stream = try await progress.subscribe(
                SubscribeRequest.with {
                    $0.afterEventID = lastSeen
                    $0.heartbeatSeconds = 1
                }, options: .session(user.token))
            var iterator = stream.makeAsyncIterator()
            let expected = missed.flatMap(\.events).map(\.id)
            let caughtUp = try await Self.next(expected.count, from: &iterator)
            #expect(caughtUp.map(\.id) == expected)
            // And live after the catch-up, without repeating.
            let live = try await Self.award(harness, user.id, 11)
            let after = try await Self.next(live.events.count, from: &iterator)
            #expect(after.map(\.id) == live.events.map(\.id))

            _ = try await harness.query("UPDATE progress_events SET created_at = now() - interval '2 days' WHERE id = \(lastSeen)")
            let error = await expectRPCError(.outOfRange) {
                let old = try await progress.subscribe(SubscribeRequest.with { $0.afterEventID = lastSeen }, options: .session(user.token))
                for try await _ in old {}
            }
            #expect(error?.details?.reason == "RESUME_TOO_OLD")
        }
    }

    @Test("a subscriber on a second server instance receives events caused on the first; a service follows all users")
    func acrossInstances() async throws {
        try await ServiceHarness.with { harness in
            var logger = Logger(label: "second-instance")
            logger.logLevel = .critical
            let second = try ApplicationServices(
                pool: harness.pool, configuration: harness.identity.authenticator.configuration, logger: logger)
            let hub = Task { _ = try? await second.events.run() }
            defer { hub.cancel() }
            let server = try await TestServer.start(services: second.services, authenticator: second.authenticator)
            let client = try await server.connect()
            let a = try await harness.signIn()
            let b = try await harness.signIn()
            let everyone = try await client.progress.subscribe(
                SubscribeRequest.with {
                    $0.allUsers = true
                    $0.heartbeatSeconds = 1
                }, options: ServiceHarness.service("everything"))
            let onlyA = try await client.progress.subscribe(SubscribeRequest.with { $0.heartbeatSeconds = 1 }, options: .session(a.token))
            var all = everyone.makeAsyncIterator()
            var mine = onlyA.makeAsyncIterator()
            try await Self.waitForHeartbeat(&all)
            try await Self.waitForHeartbeat(&mine)
            let forB = try await Self.award(harness, b.id, 3)
            let forA = try await Self.award(harness, a.id, 4)
            let seen = try await Self.next(forB.events.count + forA.events.count, from: &all)
            #expect(Set(seen.map(\.id)) == Set((forB.events + forA.events).map(\.id)))
            let seenByA = try await Self.next(forA.events.count, from: &mine)
            #expect(seenByA.map(\.id) == forA.events.map(\.id))
            await client.close()
            await server.stop()
        }
    }

    @Test("when the event listener loses its database connection, subscribers catch up from the table: nothing is missed")
    func listenerReconnects() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let stream = try await harness.connection.progress.subscribe(
                SubscribeRequest.with { $0.heartbeatSeconds = 1 }, options: .session(user.token))
            var iterator = stream.makeAsyncIterator()
            try await Self.waitForHeartbeat(&iterator)
            // Kill the listener's connection, then award while it reconnects: those NOTIFYs go
            // nowhere, and only the catch-up from progress_events can deliver them.
            // Only this test's database: every other test's listeners share the cluster.
            _ = try await harness.query("""
                SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                WHERE application_name = 'passion-listener' AND datname = current_database()
                """)
            let during = try await Self.award(harness, user.id, 6)
            let after = try await Self.award(harness, user.id, 8)
            let expected = (during.events + after.events).map(\.id)
            let received = try await Self.next(expected.count, from: &iterator)
            #expect(received.map(\.id) == expected)
        }
    }

    @Test("bad requests: a user naming another user, a service naming nobody, a bad heartbeat")
    func badRequests() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let progress = harness.connection.progress
            func refused(_ request: SubscribeRequest, _ options: CallOptions, field: String) async {
                let error = await expectRPCError(.invalidArgument) {
                    for try await _ in try await progress.subscribe(request, options: options) {}
                }
                #expect(error?.details?.fields["field"] == field)
            }
            await refused(SubscribeRequest.with { $0.userID = UUID().uuidString }, .session(user.token), field: "user_id")
            await refused(SubscribeRequest.with { $0.allUsers = true }, .session(user.token), field: "user_id")
            await refused(SubscribeRequest(), ServiceHarness.service("everything"), field: "user_id")
            await refused(SubscribeRequest.with { $0.heartbeatSeconds = 301 }, .session(user.token), field: "heartbeat_seconds")
        }
    }

    @Test("a server shutting down ends an open Subscribe at once with RESUBSCRIBE and the last event id")
    func endsOnShutdown() async throws {
        let harness = try await ServiceHarness.start()
        let user = try await harness.signIn()
        let stream = try await harness.connection.progress.subscribe(
            SubscribeRequest.with { $0.heartbeatSeconds = 1 }, options: .session(user.token))
        var iterator = stream.makeAsyncIterator()
        try await Self.waitForHeartbeat(&iterator)
        let award = try await Self.award(harness, user.id, 5)
        let received = try await Self.next(award.events.count, from: &iterator)
        harness.server.server.beginShutdown()
        do {
            while try await iterator.next() != nil {}
            Issue.record("the stream ended without a status")
        } catch let error as RPCError {
            #expect(error.code == .unavailable && error.details?.reason == "RESUBSCRIBE", "\(error)")
            #expect(error.details?.fields["last-event-id"] == "\(received.last?.id ?? -1)")
        }
        await harness.stop()
        await harness.pool.shutdown()
    }
}
