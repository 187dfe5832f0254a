import Foundation
import PassionServerAPI
import PassionClient
import PassionRPCServer
import PassionStore
import PassionTestSupport
import Testing

/// The reward defects of "rewards a client can trust": penalties past zero, level-downs, key
/// collisions, ranks after a deletion, resuming ahead of the stream, activity counts.
@Suite("Rewards a client can trust: the economy")
struct EconomyTests {
    static let progress = ServiceHarness.service("progress")

    static func award(
        _ harness: ServiceHarness, _ user: String, _ points: Int32, reason: String = "grant", key: String
    ) async throws -> RewardResult {
        try await harness.connection.progress.awardXP(options: progress) {
            $0.userID = user
            $0.points = points
            $0.reason = reason
            $0.idempotencyKey = key
        }
    }

    @Test("a penalty past zero XP or a correction past zero coins: FAILED_PRECONDITION with the balance, nothing written, no database names")
    func pastZero() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let start = try await Self.award(harness, user.id, 90, key: "start")
            let before = try await harness.snapshot() + "\(try await harness.count("SELECT count(*) AS n FROM points_ledger"))"
            let xp = await expectRPCError(.failedPrecondition) { try await Self.award(harness, user.id, -999_999, reason: "penalty", key: "p1") }
            #expect(xp?.details?.reason == "INSUFFICIENT_XP" && xp?.details?.fields["total_xp"] == "\(start.progress.totalXp)")
            let coins = await expectRPCError(.failedPrecondition) {
                try await harness.connection.progress.awardCoins(options: Self.progress) {
                    $0.userID = user.id
                    $0.coins = -1_000
                    $0.reason = "correction"
                    $0.idempotencyKey = "c1"
                }
            }
            #expect(coins?.details?.reason == "INSUFFICIENT_FUNDS" && coins?.details?.fields["balance"] == "\(start.progress.totalCoins)")
            let batch = try await harness.connection.progress.awardBatch(options: Self.progress) {
                $0.awards = [BatchAward.with {
                    $0.userID = user.id
                    $0.kind = .xp
                    $0.amount = -999_999
                    $0.reason = "penalty"
                    $0.idempotencyKey = "b1"
                }]
            }
            #expect(batch.results.first?.error.reason == "INSUFFICIENT_XP" && batch.results.first?.error.fields["sqlstate"] == nil)
            for message in [xp?.message, coins?.message, batch.results.first?.error.message] {
                #expect(message.map { !$0.contains("CHECK") && !$0.contains("user_progress") && !$0.contains("23514") } == true)
            }
            #expect(xp?.details?.fields["sqlstate"] == nil && coins?.details?.fields["sqlstate"] == nil)
            #expect(try await harness.snapshot() + "\(try await harness.count("SELECT count(*) AS n FROM points_ledger"))" == before)
            // Exactly to zero is fine.
            let zero = try await Self.award(harness, user.id, Int32(-start.progress.totalXp), reason: "penalty", key: "p2")
            #expect(zero.progress.totalXp == 0 && zero.progress.level == 1)
        }
    }

    @Test("a penalty that lowers the level emits LEVEL_DOWN, in the reward and on the stream")
    func levelDown() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let up = try await Self.award(harness, user.id, 4_500, key: "up")
            let level = up.progress.level
            #expect(level >= 10)
            let stream = try await harness.connection.progress.subscribe(
                SubscribeRequest.with { $0.heartbeatSeconds = 1 }, options: .session(user.token))
            var iterator = stream.makeAsyncIterator()
            try await SubscribeTests.waitForHeartbeat(&iterator)
            let down = try await Self.award(harness, user.id, -800, reason: "penalty", key: "down")
            #expect(down.progress.level < level)
            let event = try #require(down.event(of: .levelDown))
            #expect(event.fromLevel == level && event.toLevel == down.progress.level)
            let received = try await SubscribeTests.next(2, from: &iterator)
            #expect(received.map(\.type) == [.xpAwarded, .levelDown] && received.map(\.id) == down.events.map(\.id))
        }
    }

    @Test("keys the server derives cannot collide with callers': K/achievement/<id>, goal:<id> and '$' keys")
    func keyNamespaces() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let firstSteps = try #require(try await harness.query("SELECT id FROM achievements WHERE slug = 'first_steps'").first?.require("id", as: UUID.self))
            // Old scheme: this key was what "K" derives for first_steps, so the next award failed.
            _ = try await Self.award(harness, user.id, 5, key: "K/achievement/\(firstSteps.uuidString.lowercased())")
            let unlocking = try await Self.award(harness, user.id, 5, key: "K")
            #expect(unlocking.events.contains { $0.achievement.slug == "first_steps" })
            // A caller's key shaped like a content key does not stop the content reward.
            let goal = try await harness.connection.goals.create(options: .session(user.token)) { $0.goal.title = "Collide" }
            _ = try await Self.award(harness, user.id, 5, key: "goal:\(goal.id)")
            let done = try await harness.connection.goals.complete(options: .session(user.token)) { $0.goalID = goal.id }
            #expect(done.reward.events.contains { $0.type == .xpAwarded && $0.reason == "goal_completed" })
            // The server's own namespace is closed to callers.
            let refused = await expectRPCError(.invalidArgument) { try await Self.award(harness, user.id, 5, key: "$goal-xp:\(goal.id)") }
            #expect(refused?.details?.fields["field"] == "idempotency_key")
        }
    }

    @Test("one rank: after a deletion Leaderboard and GetProgress agree, and so do users without XP")
    func oneRank() async throws {
        try await ServiceHarness.with { harness in
            var users: [ServiceHarness.SignedIn] = []
            for (index, points) in [3_000, 2_000, 1_000].enumerated() {
                let user = try await harness.signIn()
                _ = try await Self.award(harness, user.id, Int32(points), key: "rank-\(index)")
                users.append(user)
            }
            let idle = try await harness.signIn()
            _ = try await harness.connection.users.deleteAccount(DeleteAccountRequest(), options: .session(users[0].token))
            try await harness.settleLeaderboards()
            for (user, rank) in [(users[2], Int64(2)), (idle, Int64(3))] {
                let board = try await harness.connection.progress.leaderboard(LeaderboardRequest(), options: .session(user.token))
                let progress = try await harness.connection.progress.getProgress(GetProgressRequest(), options: .session(user.token))
                #expect(board.me.rank == rank && progress.allTimeRank == rank)
            }
        }
    }

    @Test("Subscribe after an id beyond the newest event: OUT_OF_RANGE naming the newest id to resume from")
    func resumeAhead() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let award = try await Self.award(harness, user.id, 5, key: "one")
            let newest = try #require(award.events.map(\.id).max())
            let error = await expectRPCError(.outOfRange) {
                let stream = try await harness.connection.progress.subscribe(
                    SubscribeRequest.with { $0.afterEventID = newest + 1_000 }, options: .session(user.token))
                for try await _ in stream {}
            }
            #expect(error?.details?.reason == "RESUME_AHEAD" && error?.details?.fields["newest-event-id"] == "\(newest)")
            // Resuming from the newest id itself works, and later events arrive.
            let stream = try await harness.connection.progress.subscribe(
                SubscribeRequest.with {
                    $0.afterEventID = newest
                    $0.heartbeatSeconds = 1
                }, options: .session(user.token))
            var iterator = stream.makeAsyncIterator()
            try await SubscribeTests.waitForHeartbeat(&iterator)
            let later = try await Self.award(harness, user.id, 5, key: "two")
            let received = try await SubscribeTests.next(later.events.count, from: &iterator)
            #expect(received.map(\.id) == later.events.map(\.id))
        }
    }

    @Test("RecentActivity counts what happened; refused attempts only when asked for, apart")
    func recentActivity() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let me = CallOptions.session(user.token)
            _ = try await harness.connection.habits.create(options: me) { $0.habit.title = "Real" }
            for _ in 0..<3 { await expectRPCError(.invalidArgument) { try await harness.connection.habits.create(options: me) { $0.habit.title = "" } } }
            let plain = try await harness.connection.audit.recentActivity(RecentActivityRequest(), options: me)
            #expect(plain.activities.filter { $0.action == "habit.created" }.map { "\($0.status):\($0.count)" } == ["success:1"])
            let all = try await harness.connection.audit.recentActivity(options: me) { $0.includeFailures = true }
            #expect(Set(all.activities.filter { $0.action == "habit.created" }.map { "\($0.status):\($0.count)" }) == ["success:1", "failure:3"])
        }
    }
}

extension RewardResult {
    func event(of type: ProgressEventType) -> ProgressEvent? { events.first { $0.type == type } }
}
