import Foundation
import PassionServerAPI
import PassionClient
import PassionIdentity
import PassionRPCServer
import PassionServices
import PassionStore
import PassionTestSupport
import Testing

/// The content defects of "rewards a client can trust", each in the user's time zone where it
/// matters: farmed focus minutes, stale streak figures, rewritten closed quests.
@Suite("Rewards a client can trust: content")
struct RewardIntegrityTests {
    @Test("a 1-minute focus session left running for a day credits 1 minute: no farmed XP, achievements or quest progress")
    func focusFarming() async throws {
        let clock = TestClock()
        try await ServiceHarness.with(clock: clock) { harness in
            let user = try await harness.signIn()
            let me = CallOptions.session(user.token)
            clock.set("2026-11-24 09:00", in: "UTC")
            let quest = try await harness.connection.quests.create(options: me) {
                $0.quest.title = "Focus a lot"
                $0.quest.questType = "milestone"
                $0.quest.criteria.metric = "focus_minutes"
                $0.quest.target = 1000
                $0.quest.endDate = "2026-12-31"
            }
            let session = try await harness.connection.focusSessions.start(options: me) {
                $0.sessionType = "custom"
                $0.durationMinutes = 1
            }
            clock.set("2026-11-25 09:00", in: "UTC")
            let done = try await harness.connection.focusSessions.complete(options: me) { $0.sessionID = session.id }
            #expect(done.session.actualDurationMinutes == 1)
            #expect(done.session.focusedSeconds == 86_400, "what was measured is kept")
            #expect(done.reward.events.filter { $0.type == .xpAwarded }.map(\.amount) == [1])
            #expect(!done.reward.events.contains { ["focus_60", "focus_1000"].contains($0.achievement.slug) })
            #expect(done.quests.map(\.progress) == [1])
            #expect(try await harness.connection.quests.get(options: me) { $0.questID = quest.id }.progress == 1)
            let mine = try await harness.connection.achievements.mine(MineRequest(), options: me)
            #expect(mine.achievements.first { $0.achievement.slug == "focus_60" }?.current == 1)
        }
    }

    @Test("the daily job abandons sessions left open for a day, running or paused; younger ones and finished ones stay")
    func staleFocusSessions() async throws {
        let clock = TestClock()
        try await ServiceHarness.with(clock: clock) { harness in
            let admin = ServiceHarness.service("admin")
            var sessions: [String] = []
            for (index, started) in ["2026-11-23 08:00", "2026-11-23 09:30", "2026-11-24 08:30"].enumerated() {
                let user = try await harness.signIn()
                clock.set(started, in: "UTC")
                let session = try await harness.connection.focusSessions.start(options: .session(user.token)) { $0.sessionType = "pomodoro" }
                if index == 1 { _ = try await harness.connection.focusSessions.pause(options: .session(user.token)) { $0.sessionID = session.id } }
                sessions.append(session.id)
            }
            clock.set("2026-11-24 09:00", in: "UTC")
            let run = try await harness.connection.maintenance.run(options: admin) { $0.job = "stale_focus_sessions" }
            #expect(run.affected == 1)
            let statuses = try await harness.query("SELECT id, status FROM focus_sessions ORDER BY started_at").map {
                try ($0.require("id", as: UUID.self).uuidString.lowercased(), $0.require("status", as: String.self))
            }
            #expect(statuses.map(\.1) == ["abandoned", "paused", "active"])
            #expect(statuses.map(\.0) == sessions)
            clock.set("2026-11-24 10:00", in: "UTC")
            #expect(try await harness.connection.maintenance.run(options: admin) { $0.job = "stale_focus_sessions" }.affected == 1)
            // An abandoned session earns nothing, however long it ran.
            let stale = sessions[0]
            let owner = try #require(try await harness.query("""
                SELECT user_id FROM focus_sessions WHERE id = \(UUID(uuidString: stale))
                """).first?.require("user_id", as: UUID.self))
            try await expectRefused(harness, .failedPrecondition, reason: "FOCUS_SESSION_ENDED") {
                _ = try await harness.connection.focusSessions.complete(options: ServiceHarness.service("everything", asUser: owner.uuidString)) {
                    $0.sessionID = stale
                }
            }
            #expect(try await harness.count("SELECT count(*) AS n FROM points_ledger") == 0)
        }
    }

    @Test("after a missed day every streak figure agrees with Today at every moment, in the user's zone")
    func streakFiguresAgree() async throws {
        try await StreakScenario.with(zone: "America/New_York") { s in
            var habits: [String] = []
            for _ in 0..<4 { habits.append(try await s.habit(at: "2026-11-10 08:00")) }
            for day in 10...14 {
                for habit in habits { try await s.complete(habit, at: "2026-11-\(day) 20:00") }
            }
            // (local time, streak every figure must show). Until noon on the 16th the 15th can
            // still be done; from noon the streaks are broken.
            let moments: [(String, Int32)] = [("2026-11-15 23:00", 5), ("2026-11-16 11:59", 5), ("2026-11-16 12:00", 0), ("2026-11-18 09:00", 0)]
            for (moment, expected) in moments {
                s.clock.set(moment, in: s.zone)
                let today = try await s.harness.connection.habits.today(TodayRequest(), options: s.options)
                #expect(today.habits.map(\.habit.streak) == Array(repeating: expected, count: 4), "\(moment)")
                let progress = try await s.harness.connection.progress.getProgress(GetProgressRequest(), options: s.options)
                #expect(progress.activeStreaks == (expected > 0 ? 4 : 0), "\(moment)")
                let mine = try await s.harness.connection.achievements.mine(MineRequest(), options: s.options)
                #expect(mine.achievements.first { $0.achievement.slug == "streak_7" }?.current == Int64(expected), "\(moment)")
            }
            // A new completion starts again at 1 everywhere.
            try await s.complete(habits[0], at: "2026-11-18 10:00")
            let progress = try await s.harness.connection.progress.getProgress(GetProgressRequest(), options: s.options)
            #expect(progress.activeStreaks == 1)
            let mine = try await s.harness.connection.achievements.mine(MineRequest(), options: s.options)
            #expect(mine.achievements.first { $0.achievement.slug == "streak_7" }?.current == 1)
            // A paused habit keeps its frozen streak everywhere but is not an active streak.
            _ = try await s.harness.connection.habits.pause(options: s.options) { $0.habitID = habits[0] }
            #expect(try await s.harness.connection.progress.getProgress(GetProgressRequest(), options: s.options).activeStreaks == 0)
        }
    }

    @Test("a closed quest answers QUEST_CLOSED to Abandon and Complete and stays as it was")
    func closedQuests() async throws {
        let clock = TestClock()
        try await ServiceHarness.with(clock: clock) { harness in
            let user = try await harness.signIn()
            let me = CallOptions.session(user.token)
            _ = try await harness.connection.users.updateProfile(options: me) {
                $0.timeZone = "Pacific/Auckland"
                $0.updateMask.paths = ["time_zone"]
            }
            clock.set("2026-11-20 09:00", in: "Pacific/Auckland")
            let quest = try await harness.connection.quests.create(options: me) {
                $0.quest.title = "One check-in"
                $0.quest.questType = "daily"
                $0.quest.target = 1
                $0.quest.endDate = "2026-11-20"
            }
            // Past its end date in Auckland (still the 20th in UTC): failed, though the job has not run.
            clock.set("2026-11-21 00:30", in: "Pacific/Auckland")
            #expect(try await harness.connection.quests.get(options: me) { $0.questID = quest.id }.status == "failed")
            for recorded in [false, true] {
                if recorded {
                    _ = try await harness.connection.maintenance.run(options: ServiceHarness.service("admin")) { $0.job = "expired_quests" }
                }
                let abandon = try await expectRefused(harness, .failedPrecondition, reason: "QUEST_CLOSED") {
                    _ = try await harness.connection.quests.abandon(options: me) { $0.questID = quest.id }
                }
                #expect(abandon?.details?.fields["status"] == "failed")
                try await expectRefused(harness, .failedPrecondition, reason: "QUEST_CLOSED") {
                    _ = try await harness.connection.quests.complete(options: me) { $0.questID = quest.id }
                }
                #expect(try await harness.connection.quests.get(options: me) { $0.questID = quest.id }.status == "failed")
            }
        }
    }
}
