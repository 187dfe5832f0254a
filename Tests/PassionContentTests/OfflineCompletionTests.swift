import Foundation
import PassionServerAPI
import PassionClient
import PassionIdentity
import PassionRPCServer
import PassionServices
import PassionStore
import PassionTestSupport
import Testing

/// Completions made on the plane (dated back within the offline window) and taken back after a
/// mis-tap (Uncomplete), in the user's time zone.
@Suite("Offline completions and Uncomplete")
struct OfflineCompletionTests {
    @Test("a completion dated back fills its day and the streak is counted again; outside the window or ahead of today it is refused")
    func backdated() async throws {
        try await StreakScenario.with(zone: "Asia/Tokyo") { s in
            let (harness, options) = (s.harness, s.options)
            let habit = try await s.habit(at: "2026-11-10 08:00")
            for day in [10, 11, 13, 14] { try await s.complete(habit, at: "2026-11-\(day) 20:00") }
            #expect(try await s.streak(habit, at: "2026-11-14 21:00") == 2)
            // Back online on the 14th: the 12th was done offline.
            let filled = try await s.harness.connection.habits.complete(options: s.options) {
                $0.habitID = habit
                $0.localDate = "2026-11-12"
            }
            #expect(filled.completion.completionDate == "2026-11-12" && filled.habit.streak == 5)
            #expect(try await s.streak(habit, at: "2026-11-14 22:00") == 5)
            // The XP is the streak's, as any completion's: 10 + 40%.
            #expect(filled.reward.events.first { $0.type == .xpAwarded }?.amount == 14)
            s.clock.set("2026-11-14 22:00", in: s.zone)
            let cases: [(String, String)] = [("2026-11-06", "COMPLETION_OUTSIDE_WINDOW"), ("2026-11-15", "COMPLETION_OUTSIDE_WINDOW")]
            for (date, reason) in cases {
                try await expectRefused(harness, .failedPrecondition, reason: reason) {
                    _ = try await harness.connection.habits.complete(options: options) {
                        $0.habitID = habit
                        $0.localDate = date
                    }
                }
            }
            try await expectRefused(harness, .failedPrecondition, reason: "HABIT_NOT_STARTED") {
                _ = try await harness.connection.habits.complete(options: options) {
                    $0.habitID = habit
                    $0.localDate = "2026-11-09"
                }
            }
            for (date, yesterday) in [("2026-13-01", false), ("2026-11-13", true)] {
                try await expectRefused(harness, .invalidArgument, field: "local_date") {
                    _ = try await harness.connection.habits.complete(options: options) {
                        $0.habitID = habit
                        $0.localDate = date
                        $0.yesterday = yesterday
                    }
                }
            }
            // A day already done answers its completion again.
            let again = try await s.harness.connection.habits.complete(options: s.options) {
                $0.habitID = habit
                $0.localDate = "2026-11-12"
            }
            #expect(again.reward.replayed && again.completion.id == filled.completion.id)
        }
    }

    @Test("Uncomplete reverses the XP with a correction row, moves quests back, counts the streak again, once; not farmable")
    func uncomplete() async throws {
        try await StreakScenario.with(zone: "Europe/Berlin") { s in
            let (harness, options) = (s.harness, s.options)
            let habit = try await s.habit(at: "2026-11-10 08:00")
            let quest = try await s.harness.connection.quests.create(options: s.options) {
                $0.quest.title = "Five check-ins"
                $0.quest.questType = "daily"
                $0.quest.target = 5
                $0.quest.endDate = "2026-11-30"
            }
            try await s.complete(habit, at: "2026-11-10 20:00")
            s.clock.set("2026-11-11 20:00", in: s.zone)
            let before = try await s.harness.connection.progress.getProgress(GetProgressRequest(), options: s.options)
            let ledgerRows = try await s.harness.count("SELECT count(*) AS n FROM points_ledger")
            // A mis-tap and its undo, five times over: one completion's worth stays.
            var last: CompleteHabitResponse?
            for round in 0..<5 {
                let done = try await s.harness.connection.habits.complete(options: s.options) { $0.habitID = habit }
                #expect(done.habit.streak == 2 && !done.reward.replayed, "round \(round)")
                let undone = try await s.harness.connection.habits.uncomplete(options: s.options) { $0.completionID = done.completion.id }
                #expect(undone.completion.id == done.completion.id && undone.habit.streak == 1 && !undone.habit.doneThisPeriod)
                #expect(undone.reward.events.contains { $0.type == .xpAwarded && $0.amount == -11 && $0.reason == "correction" })
                // Once: a repeat answers the same, and nothing more is taken.
                let repeated = try await s.harness.connection.habits.uncomplete(options: s.options) { $0.completionID = done.completion.id }
                #expect(repeated.reward.replayed && repeated.completion.id == done.completion.id)
                last = done
            }
            let after = try await s.harness.connection.progress.getProgress(GetProgressRequest(), options: s.options)
            #expect(after.totalXp == before.totalXp)
            #expect(try await s.harness.connection.quests.get(options: s.options) { $0.questID = quest.id }.progress == 1)
            // The ledger only grew: five awards and five corrections.
            #expect(try await s.harness.count("SELECT count(*) AS n FROM points_ledger") == ledgerRows + 10)
            #expect(try await s.harness.count("SELECT count(*) AS n FROM points_ledger WHERE reason = 'correction' AND points < 0") == 5)
            // Someone else's live completion, or one already taken back by someone else: NOT_FOUND.
            let stranger = try await s.harness.signIn()
            let live = try #require(try await s.harness.query("SELECT id FROM habit_completions").first?.require("id", as: UUID.self))
            for id in [live.uuidString, last?.completion.id ?? ""] {
                try await expectRefused(harness, .notFound, reason: "COMPLETION_NOT_FOUND") {
                    _ = try await harness.connection.habits.uncomplete(options: .session(stranger.token)) { $0.completionID = id }
                }
            }
            let first = try #require(try await s.harness.query("SELECT id FROM habit_completions LIMIT 1").first?.require("id", as: UUID.self))
            s.clock.set("2026-11-19 09:00", in: s.zone)
            try await expectRefused(harness, .failedPrecondition, reason: "COMPLETION_TOO_OLD") {
                _ = try await harness.connection.habits.uncomplete(options: options) { $0.completionID = first.uuidString }
            }
            try await expectRefused(harness, .invalidArgument, field: "completion_id") {
                _ = try await harness.connection.habits.uncomplete(options: options) { $0.completionID = "nope" }
            }
            let integrity = try await s.harness.connection.maintenance.integrityCheck(
                IntegrityCheckRequest(), options: ServiceHarness.service("admin"))
            #expect(integrity.problems.isEmpty, "\(integrity.problems)")
        }
    }

    @Test("no farming around Uncomplete: claimed quests, chains, paused days, and the day's paid completions and goals")
    func farming() async throws {
        try await StreakScenario.with(zone: "Europe/Berlin") { s in
            let (harness, options) = (s.harness, s.options)
            let habit = try await s.habit(at: "2026-11-10 08:00")
            let service = ServiceHarness.service("everything", asUser: s.user.id)
            let claimable = try await harness.connection.quests.create(options: service) {
                $0.quest.title = "One check-in"
                $0.quest.questType = "daily"
                $0.quest.target = 1
                $0.quest.endDate = "2026-11-12"
            }
            let chain = try await harness.connection.quests.create(options: service) {
                $0.quest.title = "A chain"
                $0.quest.questType = "habit_chain"
                $0.quest.target = 10
                $0.quest.endDate = "2026-11-30"
            }
            try await s.complete(habit, at: "2026-11-10 20:00")
            s.clock.set("2026-11-11 20:00", in: s.zone)
            let second = try await harness.connection.habits.complete(options: options) { $0.habitID = habit }
            #expect(try await harness.connection.quests.get(options: options) { $0.questID = chain.id }.progress == 2)
            _ = try await harness.connection.quests.complete(options: options) { $0.questID = claimable.id }
            // The first completion fed a quest that has paid: it cannot be taken back.
            let first = try #require(try await harness.query("""
                SELECT id FROM habit_completions WHERE completion_date = '2026-11-10'
                """).first?.require("id", as: UUID.self)).uuidString
            try await expectRefused(harness, .failedPrecondition, reason: "QUEST_CLAIMED") {
                _ = try await harness.connection.habits.uncomplete(options: options) { $0.completionID = first }
            }
            // The second did not feed it (the quest was full): taking it back lowers the chain to
            // the streak counted again.
            _ = try await harness.connection.habits.uncomplete(options: options) { $0.completionID = second.completion.id }
            #expect(try await harness.connection.quests.get(options: options) { $0.questID = chain.id }.progress == 1)

            // A paused day cannot be filled in after the resume.
            s.clock.set("2026-11-13 09:00", in: s.zone)
            _ = try await harness.connection.habits.pause(HabitRequest.with { $0.habitID = habit }, options: options)
            s.clock.set("2026-11-15 09:00", in: s.zone)
            _ = try await harness.connection.habits.resume(HabitRequest.with { $0.habitID = habit }, options: options)
            try await expectRefused(harness, .failedPrecondition, reason: "HABIT_PAUSED") {
                _ = try await harness.connection.habits.complete(options: options) {
                    $0.habitID = habit
                    $0.localDate = "2026-11-13"
                }
            }

            // The day's paid completions: the 26th habit completion of a day counts, unpaid.
            s.clock.set("2026-11-16 09:00", in: s.zone)
            var paid: [Int64] = []
            for index in 0..<26 {
                let extra = try await harness.connection.habits.create(options: options) { $0.habit.title = "Habit \(index)" }
                let done = try await harness.connection.habits.complete(options: options) { $0.habitID = extra.id }
                paid.append(done.reward.events.first { $0.type == .xpAwarded }?.amount ?? 0)
            }
            #expect(paid.prefix(25).allSatisfy { $0 > 0 } && paid.last == 0)
            // The day's paid goals: the 4th goal completed in a day pays nothing.
            var goalXP: [Int64] = []
            for index in 0..<4 {
                let goal = try await harness.connection.goals.create(options: options) { $0.goal.title = "Goal \(index)" }
                let done = try await harness.connection.goals.complete(options: options) { $0.goalID = goal.id }
                goalXP.append(done.reward.events.first { $0.type == .xpAwarded && $0.reason == "goal_completed" }?.amount ?? 0)
            }
            #expect(goalXP == [150, 150, 150, 0])
            let integrity = try await harness.connection.maintenance.integrityCheck(IntegrityCheckRequest(), options: ServiceHarness.service("admin"))
            #expect(integrity.problems.isEmpty)
        }
    }

    @Test("an Uncomplete on a resumed habit keeps the streak carried over the pause")
    func uncompleteKeepsCarry() async throws {
        try await StreakScenario.with(zone: "UTC") { s in
            let habit = try await s.habit(at: "2026-11-10 08:00")
            for day in 10...12 { try await s.complete(habit, at: "2026-11-\(day) 20:00") }
            s.clock.set("2026-11-13 09:00", in: s.zone)
            _ = try await s.harness.connection.habits.pause(HabitRequest.with { $0.habitID = habit }, options: s.options)
            s.clock.set("2026-11-20 09:00", in: s.zone)
            _ = try await s.harness.connection.habits.resume(HabitRequest.with { $0.habitID = habit }, options: s.options)
            let tap = try await s.harness.connection.habits.complete(options: s.options) { $0.habitID = habit }
            #expect(tap.habit.streak == 4)
            let undone = try await s.harness.connection.habits.uncomplete(options: s.options) { $0.completionID = tap.completion.id }
            #expect(undone.habit.streak == 3)
            #expect(try await s.streak(habit, at: "2026-11-20 23:00") == 3)
        }
    }

    @Test("an Uncomplete that lowers the level says so with a level_down event")
    func uncompleteLowersLevel() async throws {
        try await StreakScenario.with(zone: "UTC") { s in
            let habit = try await s.habit(at: "2026-11-10 08:00")
            // 70 XP granted (+10 for first_steps); the completion's 10 (+10 for completions_1)
            // reaches 100, level 2; taking it back returns to 90, level 1.
            _ = try await s.harness.connection.progress.awardXP(options: ServiceHarness.service("progress")) {
                $0.userID = s.user.id
                $0.points = 70
                $0.reason = "grant"
                $0.idempotencyKey = "start"
            }
            try await s.complete(habit, at: "2026-11-10 20:00")
            #expect(try await s.harness.connection.progress.getProgress(GetProgressRequest(), options: s.options).level == 2)
            let completion = try #require(try await s.harness.query("SELECT id FROM habit_completions").first?.require("id", as: UUID.self))
            let undone = try await s.harness.connection.habits.uncomplete(options: s.options) { $0.completionID = completion.uuidString }
            #expect(undone.reward.progress.level == 1 && undone.reward.progress.totalXp == 90)
            #expect(undone.reward.events.contains { $0.type == .levelDown && $0.fromLevel == 2 && $0.toLevel == 1 })
        }
    }
}
