import Foundation
import PassionServerAPI
import PassionClient
import PassionRPCServer
import PassionServices
import PassionStore
import PassionTestSupport
import SwiftProtobuf
import Testing

/// The edges of the content calls: every list order paged, limits at and past their bounds,
/// rewards by priority and streak, and the audit rows of each state change.
@Suite("Content edges through the whole stack")
struct ContentEdgeTests {
    @Test("goal lists: every order pages through every goal once, tokens keep their order; updates validated; XP by priority")
    func goalListsAndRewards() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let me = CallOptions.session(user.token)
            let goals = harness.connection.goals
            var created: [Goal] = []
            for (priority, target) in [(3, "2027-03-01"), (1, ""), (0, "2027-01-15"), (5, "2027-02-01"), (1, "2027-01-15")] {
                created.append(try await goals.create(options: me) {
                    $0.goal.title = "Goal \(created.count)"
                    $0.goal.priority = Int32(priority)
                    $0.goal.targetDate = target
                })
            }
            for order in [GoalOrder.priority, .targetDate, .created] {
                let all = try await goals.list(options: me) {
                    $0.order = order
                    $0.pageSize = 100
                }.goals
                #expect(Set(all.map(\.id)) == Set(created.map(\.id)), "\(order)")
                var paged: [String] = []
                var token = ""
                repeat {
                    let page = try await goals.list(options: me) {
                        $0.order = order
                        $0.pageSize = 2
                        $0.pageToken = token
                    }
                    #expect(page.goals.count <= 2)
                    paged += page.goals.map(\.id)
                    token = page.nextPageToken
                } while !token.isEmpty && paged.count <= created.count
                #expect(paged == all.map(\.id), "paging in \(order) order differs from one page")
                switch order {
                case .priority:
                    let ranks = all.map { $0.priority == 0 ? 6 : $0.priority }
                    #expect(ranks == ranks.sorted(), "priority order: \(ranks)")
                case .targetDate:
                    let dates = all.map { $0.targetDate.isEmpty ? "9999-12-31" : $0.targetDate }
                    #expect(dates == dates.sorted(), "target date order: \(dates)")
                default:
                    #expect(all.map(\.id) == created.reversed().map(\.id), "newest first")
                }
            }
            // A token of one order is refused in another, not misread.
            let priorityPage = try await goals.list(options: me) {
                $0.order = .priority
                $0.pageSize = 1
            }
            try await expectRefused(harness, .invalidArgument, field: "page_token") {
                _ = try await goals.list(options: me) {
                    $0.order = .created
                    $0.pageToken = priorityPage.nextPageToken
                }
            }
            for (field, change) in [
                ("category", { @Sendable (r: inout ListGoalsRequest) in r.category = "chores" }),
                ("page_size", { @Sendable (r: inout ListGoalsRequest) in r.pageSize = 101 }),
                ("page_size", { @Sendable (r: inout ListGoalsRequest) in r.pageSize = -1 }),
                ("page_token", { @Sendable (r: inout ListGoalsRequest) in r.pageToken = "not a token" }),
            ] as [(String, @Sendable (inout ListGoalsRequest) -> Void)] {
                try await expectRefused(harness, .invalidArgument, field: field) { _ = try await goals.list(options: me) { change(&$0) } }
            }

            // Update validates what the mask names; "*" replaces every field.
            let target = created[0]
            for (field, paths, change) in [
                ("goal.title", ["title"], { @Sendable (g: inout Goal) in g.title = "" }),
                ("goal.title", ["title"], { @Sendable (g: inout Goal) in g.title = String(repeating: "t", count: 256) }),
                ("goal.priority", ["priority"], { @Sendable (g: inout Goal) in g.priority = 9 }),
                ("goal.category", ["category"], { @Sendable (g: inout Goal) in g.category = "chores" }),
                ("goal.target_date", ["target_date"], { @Sendable (g: inout Goal) in g.targetDate = "2027-13-01" }),
                ("update_mask", [], { @Sendable (g: inout Goal) in g.title = "No mask" }),
            ] as [(String, [String], @Sendable (inout Goal) -> Void)] {
                try await expectRefused(harness, .invalidArgument, field: field) {
                    _ = try await goals.update(options: me) {
                        $0.goal.id = target.id
                        change(&$0.goal)
                        $0.updateMask.paths = paths
                    }
                }
            }
            let replaced = try await goals.update(options: me) {
                $0.goal.id = target.id
                $0.goal.title = "Replaced"
                $0.updateMask.paths = ["*"]
            }
            #expect(replaced.title == "Replaced" && replaced.priority == 0 && replaced.targetDate.isEmpty)

            // 50 × (6 − priority) XP and a tenth of it in coins; no priority counts as 3.
            for (goal, xp) in [(created[3], 50), (created[2], 150), (created[1], 250)] {
                let done = try await goals.complete(options: me) { $0.goalID = goal.id }
                #expect(done.reward.events.first { $0.type == .xpAwarded && $0.reason == "goal_completed" }?.amount == Int64(xp))
                #expect(done.reward.events.first { $0.type == .coinsAwarded && $0.reason == "goal_completed" }?.amount == Int64(xp / 10))
            }
        }
    }

    @Test("titles count characters as the database does: 255 code points fit, 256 are refused even as 128 graphemes")
    func titleLength() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let me = CallOptions.session(user.token)
            let longest = String(repeating: "é", count: 255)
            #expect(try await harness.connection.goals.create(options: me) { $0.goal.title = longest }.title == longest)
            #expect(try await harness.connection.habits.create(options: me) { $0.habit.title = longest }.title == longest)
            // "e" + COMBINING ACUTE ACCENT: one character to Swift, two to PostgreSQL.
            let combining = String(repeating: "e\u{301}", count: 128)
            #expect(combining.count == 128 && combining.unicodeScalars.count == 256)
            try await expectRefused(harness, .invalidArgument, field: "goal.title") {
                _ = try await harness.connection.goals.create(options: me) { $0.goal.title = combining }
            }
            try await expectRefused(harness, .invalidArgument, field: "habit.title") {
                _ = try await harness.connection.habits.create(options: me) { $0.habit.title = combining }
            }
        }
    }

    @Test("habits: the streak bonus stops at +100%; Today shows pending and streaks; History's default range and limit; a new frequency recounts")
    func habitEdges() async throws {
        let clock = TestClock()
        try await ServiceHarness.with(clock: clock) { harness in
            let user = try await harness.signIn()
            let me = CallOptions.session(user.token)
            let habits = harness.connection.habits
            clock.set("2026-11-01 07:00", in: "UTC")
            let daily = try await habits.create(options: me) { $0.habit.title = "Stretch" }
            var xp: [Int64] = []
            for day in 1...13 {
                clock.set(String(format: "2026-11-%02d 07:00", day), in: "UTC")
                let done = try await habits.complete(options: me) { $0.habitID = daily.id }
                xp.append(done.reward.events.first { $0.type == .xpAwarded && $0.reason == "habit_completed" }?.amount ?? -1)
            }
            #expect(xp == [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 20, 20])

            clock.set("2026-11-13 07:30", in: "UTC")
            let pending = try await habits.create(options: me) { $0.habit.title = "Read" }
            let today = try await habits.today(TodayRequest(), options: me)
            #expect(today.habits.map(\.habit.id) == [pending.id, daily.id])
            #expect(today.habits.map(\.status) == ["pending", "completed"])
            #expect(today.habits.map(\.habit.streak) == [0, 13])

            // Without dates: the last 30 days up to today.
            #expect(try await habits.history(options: me) { $0.habitID = daily.id }.completions.count == 13)
            try await expectRefused(harness, .invalidArgument, field: "to_date") {
                _ = try await habits.history(options: me) {
                    $0.fromDate = "2025-01-01"
                    $0.toDate = "2026-11-13"
                }
            }

            // Weekly instead of daily: Sun 1 Nov, Mon 2–Sun 8, Mon 9–Fri 13 are three ISO weeks.
            let weekly = try await habits.update(options: me) {
                $0.habit.id = daily.id
                $0.habit.frequency = "weekly"
                $0.updateMask.paths = ["frequency"]
            }
            #expect(weekly.frequency == "weekly" && weekly.streak == 3 && weekly.totalCompletions == 13)

            // Update validates what the mask names; nothing changes on a refusal.
            for (field, paths, change) in [
                ("habit.title", ["title"], { @Sendable (h: inout Habit) in h.title = " " }),
                ("habit.frequency", ["frequency"], { @Sendable (h: inout Habit) in h.frequency = "hourly" }),
                ("habit.category", ["category"], { @Sendable (h: inout Habit) in h.category = "fun" }),
                ("habit.goal_id", ["goal_id"], { @Sendable (h: inout Habit) in h.goalID = "nope" }),
                ("update_mask", ["streak"], { @Sendable (h: inout Habit) in h.streak = 99 }),
            ] as [(String, [String], @Sendable (inout Habit) -> Void)] {
                try await expectRefused(harness, .invalidArgument, field: field) {
                    _ = try await habits.update(options: me) {
                        $0.habit.id = daily.id
                        change(&$0.habit)
                        $0.updateMask.paths = paths
                    }
                }
            }

            clock.set("2026-12-05 08:00", in: "UTC")
            #expect(try await habits.history(options: me) { $0.habitID = daily.id }.completions.map(\.completionDate).last == "2026-11-05")
            let fresh = try await habits.create(options: me) { $0.habit.title = "New today" }
            try await expectRefused(harness, .failedPrecondition, reason: "HABIT_NOT_STARTED") {
                _ = try await habits.complete(options: me) {
                    $0.habitID = fresh.id
                    $0.yesterday = true
                }
            }
            _ = try await habits.pause(options: me) { $0.habitID = pending.id }
            _ = try await habits.resume(options: me) { $0.habitID = pending.id }
            _ = try await habits.archive(options: me) { $0.habitID = pending.id }
            _ = try await habits.unarchive(options: me) { $0.habitID = pending.id }
            for action in ["habit.created", "habit.updated", "habit.completed", "habit.paused", "habit.resumed", "habit.archived", "habit.unarchived"] {
                #expect(try await !harness.auditRows(action: action).isEmpty, "\(action) not audited")
            }
            #expect(try await harness.auditRows(action: "habit.completed").contains { try $0.require("status", as: String.self) == "failure" })
        }
    }

    @Test("quests: milestones count completions and focus minutes; a completed quest cannot be abandoned; every change audited")
    func milestoneQuests() async throws {
        let clock = TestClock()
        try await ServiceHarness.with(clock: clock) { harness in
            let user = try await harness.signIn()
            let me = CallOptions.session(user.token)
            let quests = harness.connection.quests
            clock.set("2026-11-20 08:00", in: "UTC")
            let completions = try await quests.create(options: me) {
                $0.quest.title = "Two check-ins"
                $0.quest.questType = "milestone"
                $0.quest.endDate = "2026-11-30"
                $0.quest.target = 2
                $0.quest.criteria.metric = "completions"
            }
            let minutes = try await quests.create(options: me) {
                $0.quest.title = "An hour of focus"
                $0.quest.questType = "milestone"
                $0.quest.endDate = "2026-11-30"
                $0.quest.target = 60
                $0.quest.criteria.metric = "focus_minutes"
            }
            let first = try await harness.connection.habits.create(options: me) { $0.habit.title = "One" }
            let second = try await harness.connection.habits.create(options: me) { $0.habit.title = "Two" }
            let moved = try await harness.connection.habits.complete(options: me) { $0.habitID = first.id }
            #expect(moved.quests.map(\.questID) == [completions.id] && moved.quests.first?.progress == 1)
            _ = try await harness.connection.habits.complete(options: me) { $0.habitID = second.id }

            let session = try await harness.connection.focusSessions.start(options: me) {
                $0.sessionType = "custom"
                $0.durationMinutes = 45
            }
            clock.set("2026-11-20 08:45", in: "UTC")
            let focused = try await harness.connection.focusSessions.complete(options: me) { $0.sessionID = session.id }
            #expect(focused.quests.map(\.questID) == [minutes.id] && focused.quests.first?.progress == 45)
            #expect(try await quests.get(options: me) { $0.questID = minutes.id }.status == "active")

            let claimed = try await quests.complete(options: me) { $0.questID = completions.id }
            #expect(claimed.quest.status == "completed" && claimed.quest.progress == 2)
            try await expectRefused(harness, .failedPrecondition, reason: "QUEST_CLOSED") {
                _ = try await quests.abandon(options: me) { $0.questID = completions.id }
            }
            #expect(try await quests.abandon(options: me) { $0.questID = minutes.id }.status == "abandoned")
            for action in ["quest.created", "quest.completed", "quest.abandoned"] {
                #expect(try await harness.auditRows(action: action).contains { try $0.require("status", as: String.self) == "success" }, "\(action)")
            }
            #expect(try await harness.auditRows(action: "quest.abandoned").contains { try $0.require("status", as: String.self) == "failure" })
        }
    }

    @Test("focus: custom lengths 1 and 480, another user's goal, completing while paused, stats by local day and whole ISO week")
    func focusEdges() async throws {
        let clock = TestClock()
        try await ServiceHarness.with(clock: clock) { harness in
            let user = try await harness.signIn()
            let other = try await harness.signIn()
            let me = CallOptions.session(user.token)
            let focus = harness.connection.focusSessions
            _ = try await harness.connection.users.updateProfile(options: me) {
                $0.timeZone = "America/New_York"
                $0.updateMask.paths = ["time_zone"]
            }
            let theirGoal = try await harness.connection.goals.create(options: .session(other.token)) { $0.goal.title = "Theirs" }
            try await expectRefused(harness, .notFound, field: "goal_id", reason: "GOAL_NOT_FOUND") {
                _ = try await focus.start(options: me) {
                    $0.sessionType = "pomodoro"
                    $0.goalID = theirGoal.id
                }
            }

            // Sessions that end on local days across three ISO weeks; the first ends at 22:30
            // New York time, already the next day in UTC.
            let ends: [(String, Int32)] = [
                ("2026-11-02 21:30", 60), ("2026-11-09 12:00", 5), ("2026-11-10 08:00", 1), ("2026-11-16 08:00", 30), ("2026-11-19 08:00", 480),
            ]
            for (end, minutes) in ends {
                let endDate = TestClock.date(end, in: "America/New_York")
                clock.set(endDate.addingTimeInterval(-Double(minutes) * 60))
                let session = try await focus.start(options: me) {
                    $0.sessionType = "custom"
                    $0.durationMinutes = minutes
                }
                clock.set(endDate)
                #expect(try await focus.complete(options: me) { $0.sessionID = session.id }.session.actualDurationMinutes == minutes)
            }
            // Completing a paused session counts the running time only.
            clock.set("2026-11-19 09:00", in: "America/New_York")
            let paused = try await focus.start(options: me) { $0.sessionType = "pomodoro" }
            clock.set("2026-11-19 09:10", in: "America/New_York")
            _ = try await focus.pause(options: me) { $0.sessionID = paused.id }
            clock.set("2026-11-19 09:40", in: "America/New_York")
            let done = try await focus.complete(options: me) { $0.sessionID = paused.id }
            #expect(done.session.actualDurationMinutes == 10)

            // Ten days back from Thursday the 19th: the 10th to the 19th; weeks whole from Monday the 9th,
            // so the first week also counts the 9th.
            let stats = try await focus.stats(options: me) { $0.days = 10 }
            #expect(stats.days.map(\.date) == ["2026-11-10", "2026-11-16", "2026-11-19"])
            #expect(stats.days.map(\.minutes) == [1, 30, 490])
            #expect(stats.weeks.map(\.date) == ["2026-11-09", "2026-11-16"])
            #expect(stats.weeks.map(\.minutes) == [6, 520] && stats.totalMinutes == 521)
            let month = try await focus.stats(options: me) { $0.days = 30 }
            #expect(month.days.first?.date == "2026-11-02" && month.days.first?.minutes == 60 && month.totalMinutes == 586)

            for (field, change) in [
                ("days", { @Sendable (r: inout FocusStatsRequest) in r.days = 367 }),
                ("days", { @Sendable (r: inout FocusStatsRequest) in r.days = -1 }),
            ] as [(String, @Sendable (inout FocusStatsRequest) -> Void)] {
                try await expectRefused(harness, .invalidArgument, field: field) { _ = try await focus.stats(options: me) { change(&$0) } }
            }
            try await expectRefused(harness, .invalidArgument, field: "status") {
                _ = try await focus.list(options: me) { $0.status = "dreaming" }
            }
            for action in ["focus_session.started", "focus_session.paused", "focus_session.completed"] {
                #expect(try await !harness.auditRows(action: action).isEmpty, "\(action) not audited")
            }
            #expect(try await harness.auditRows(action: "focus_session.started").contains { try $0.require("status", as: String.self) == "failure" })
        }
    }
}
