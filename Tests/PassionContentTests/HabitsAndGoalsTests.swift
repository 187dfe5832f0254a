import Foundation
import PassionServerAPI
import PassionClient
import PassionRPCServer
import PassionServices
import PassionStore
import PassionTestSupport
import SwiftProtobuf
import Testing

/// The content tables of a user, to show a refused call changed nothing.
func contentState(_ harness: ServiceHarness) async throws -> String {
    let rows = try await harness.query("""
        SELECT (SELECT coalesce(string_agg(row(g.*)::text, ',' ORDER BY g.id), '') FROM goals g) || '|'
            || (SELECT coalesce(string_agg(row(h.*)::text, ',' ORDER BY h.id), '') FROM habits h) || '|'
            || (SELECT coalesce(string_agg(row(c.*)::text, ',' ORDER BY c.id), '') FROM habit_completions c) || '|'
            || (SELECT coalesce(string_agg(row(p.*)::text, ',' ORDER BY p.id), '') FROM habit_pauses p) || '|'
            || (SELECT coalesce(string_agg(row(q.*)::text, ',' ORDER BY q.id), '') FROM quests q) || '|'
            || (SELECT coalesce(string_agg(row(f.*)::text, ',' ORDER BY f.id), '') FROM focus_sessions f) || '|'
            || (SELECT coalesce(string_agg(row(u.*)::text, ',' ORDER BY u.user_id), '') FROM user_progress u) || '|'
            || (SELECT count(*) FROM user_achievements) || '|'
            || (SELECT count(*) FROM points_ledger) || '/' || (SELECT count(*) FROM coins_ledger) AS state
        """)
    return try rows.first?.require("state", as: String.self) ?? ""
}

/// Expects `call` to fail with `code` naming `field` (when given), and nothing to change.
@discardableResult
func expectRefused(
    _ harness: ServiceHarness, _ code: StatusCode, field: String? = nil, reason: String? = nil,
    sourceLocation: SourceLocation = #_sourceLocation, _ call: @escaping @Sendable () async throws -> Void
) async throws -> RPCError? {
    let before = try await contentState(harness)
    let error = await expectRPCError(code, sourceLocation: sourceLocation) { try await call() }
    if let field { #expect(error?.details?.fields["field"] == field, "\(String(describing: error))", sourceLocation: sourceLocation) }
    if let reason { #expect(error?.details?.reason == reason, "\(String(describing: error))", sourceLocation: sourceLocation) }
    #expect(try await contentState(harness) == before, "a refused call changed content", sourceLocation: sourceLocation)
    return error
}

@Suite("Goals and habits through the whole stack")
struct HabitsAndGoalsTests {
    @Test("goal life: create, list with habit counts and filters, update, complete pays XP and coins once, archive, delete, restore")
    func goals() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let me = CallOptions.session(user.token)
            let goals = harness.connection.goals
            let metadata = try Google_Protobuf_Struct(jsonString: #"{"distance_km": 42}"#)
            let run = try await goals.create(options: me) {
                $0.goal.title = "  Run a marathon  "
                $0.goal.category = "health"
                $0.goal.priority = 1
                $0.goal.targetDate = "2027-04-30"
                $0.goal.metadata = metadata
            }
            #expect(run.title == "Run a marathon" && run.status == "active" && run.priority == 1 && run.targetDate == "2027-04-30")
            #expect(run.metadata.fields["distance_km"]?.numberValue == 42)
            let read = try await goals.create(options: me) {
                $0.goal.title = "Read 20 books"
                $0.goal.category = "learning"
            }
            let habit = try await harness.connection.habits.create(options: me) {
                $0.habit.title = "Run 5 km"
                $0.habit.goalID = run.id
            }
            #expect(habit.goalID == run.id && habit.frequency == "daily" && habit.streak == 0)

            // The seed's "active goals with habit counts": priority order, counts of active habits.
            let active = try await goals.list(options: me) { $0.status = "active" }
            #expect(active.goals.map(\.id) == [run.id, read.id])
            #expect(active.goals.map(\.habitCount) == [1, 0])
            #expect(try await goals.list(options: me) { $0.category = "learning" }.goals.map(\.id) == [read.id])
            #expect(try await goals.list(options: me) { $0.order = .targetDate }.goals.first?.id == run.id)
            // Paging: one per page, every goal once.
            let first = try await goals.list(options: me) {
                $0.pageSize = 1
                $0.order = .created
            }
            let second = try await goals.list(options: me) {
                $0.pageSize = 1
                $0.order = .created
                $0.pageToken = first.nextPageToken
            }
            #expect(first.goals.map(\.id) == [read.id] && second.goals.map(\.id) == [run.id] && second.nextPageToken.isEmpty)

            let renamed = try await goals.update(options: me) {
                $0.goal.id = read.id
                $0.goal.title = "Read 30 books"
                $0.goal.priority = 2
                $0.updateMask.paths = ["title", "priority"]
            }
            #expect(renamed.title == "Read 30 books" && renamed.priority == 2 && renamed.category == "learning")

            // Priority 1: 250 XP and 25 coins; the goal_1 achievement unlocks with it.
            let done = try await goals.complete(options: me) { $0.goalID = run.id }
            #expect(done.goal.status == "completed" && done.goal.habitCount == 1)
            #expect(done.reward.events.contains { $0.type == .xpAwarded && $0.amount == 250 })
            #expect(done.reward.events.contains { $0.type == .coinsAwarded && $0.amount == 25 })
            #expect(done.reward.events.contains { $0.type == .achievementUnlocked && $0.achievement.slug == "goal_1" })
            // A repeat (a retry after UNAVAILABLE) answers the first result, pays nothing again.
            let again = try await goals.complete(options: me) { $0.goalID = run.id }
            #expect(again.reward.replayed && !done.reward.replayed)
            #expect(again.reward.events == done.reward.events && again.goal.id == done.goal.id && again.quests == done.quests)
            #expect(try await harness.count("SELECT count(*) AS n FROM points_ledger WHERE reason = 'goal_completed'") == 1)

            let abandoned = try await goals.abandon(options: me) { $0.goalID = read.id }
            #expect(abandoned.status == "abandoned")
            let notActive = await expectRPCError(.failedPrecondition) { try await goals.complete(options: me) { $0.goalID = read.id } }
            #expect(notActive?.details?.reason == "GOAL_NOT_ACTIVE")
            let archived = try await goals.archive(options: me) { $0.goalID = run.id }
            #expect(archived.archived)
            #expect(try await goals.list(ListGoalsRequest(), options: me).goals.map(\.id) == [read.id])
            #expect(try await goals.list(options: me) { $0.archived = true }.goals.map(\.id) == [run.id])
            let deleted = try await goals.delete(options: me) { $0.goalID = read.id }
            #expect(deleted.deleted)
            #expect(try await goals.list(ListGoalsRequest(), options: me).goals.isEmpty)
            #expect(try await goals.list(options: me) { $0.includeHidden = true }.goals.map(\.id) == [read.id])
            #expect(try await goals.restore(options: me) { $0.goalID = read.id }.deleted == false)
            // Every change is on the audit trail.
            for action in ["goal.created", "goal.updated", "goal.completed", "goal.abandoned", "goal.archived", "goal.deleted", "goal.restored"] {
                #expect(try await !harness.auditRows(action: action).isEmpty, "\(action) not audited")
            }
        }
    }

    @Test("habit life: complete pays XP with the streak bonus and the events; once per day; paused, archived, moved")
    func habits() async throws {
        let clock = TestClock()
        try await ServiceHarness.with(clock: clock) { harness in
            let user = try await harness.signIn()
            let me = CallOptions.session(user.token)
            let habits = harness.connection.habits
            let goal = try await harness.connection.goals.create(options: me) { $0.goal.title = "Fitness" }
            clock.set("2026-11-20 07:00", in: "UTC")
            let habit = try await habits.create(options: me) {
                $0.habit.title = "Push-ups"
                $0.habit.category = "health"
            }
            var xp: [Int64] = []
            for day in 20...23 {
                clock.set("2026-11-\(day) 07:00", in: "UTC")
                let done = try await habits.complete(options: me) { $0.habitID = habit.id }
                xp.append(done.reward.events.first { $0.type == .xpAwarded }?.amount ?? 0)
                #expect(done.habit.streak == Int32(day - 19) && done.habit.totalCompletions == Int32(day - 19) && done.habit.doneThisPeriod)
                if day == 20 {
                    // The first completion unlocks "Checked In" and "First Steps", in the events.
                    #expect(done.reward.events.contains { $0.achievement.slug == "completions_1" })
                }
            }
            // 10 XP, plus 10% per streak day beyond the first.
            #expect(xp == [10, 11, 12, 13])
            // Once per day: a repeat answers the day's completion and its reward again, marked
            // replayed, and writes nothing.
            let before = try await harness.count("SELECT count(*) AS n FROM points_ledger") + harness.count("SELECT count(*) AS n FROM habit_completions")
            let twice = try await habits.complete(options: me) { $0.habitID = habit.id }
            #expect(twice.reward.replayed && twice.completion.completionDate == "2026-11-23" && twice.habit.streak == 4)
            #expect(try await harness.count("SELECT count(*) AS n FROM points_ledger") + harness.count("SELECT count(*) AS n FROM habit_completions") == before)

            let today = try await habits.today(TodayRequest(), options: me)
            #expect(today.date == "2026-11-23" && today.timeZone == "UTC")
            #expect(today.habits.map(\.status) == ["completed"])
            let history = try await habits.history(options: me) {
                $0.habitID = habit.id
                $0.fromDate = "2026-11-21"
                $0.toDate = "2026-11-22"
            }
            #expect(history.completions.map(\.completionDate) == ["2026-11-22", "2026-11-21"])
            let dashboard = try await harness.connection.goals.dashboard(DashboardRequest(), options: me)
            #expect(dashboard.activeGoals == 1 && dashboard.activeHabits == 1 && dashboard.habitsDue == 0 && dashboard.today == "2026-11-23")
            let progress = try await harness.connection.progress.getProgress(GetProgressRequest(), options: me)
            // The completions' 46 XP plus the achievements they unlocked.
            #expect(dashboard.totalXp == progress.totalXp && dashboard.totalXp > 46 && dashboard.level == progress.level)
            #expect(dashboard.totalCoins == progress.totalCoins && dashboard.displayName == "Test User")

            // Moving it to the goal.
            let moved = try await habits.update(options: me) {
                $0.habit.id = habit.id
                $0.habit.goalID = goal.id
                $0.updateMask.paths = ["goal_id"]
            }
            #expect(moved.goalID == goal.id && moved.streak == 4)
            #expect(try await harness.connection.goals.get(options: me) { $0.goalID = goal.id }.habitCount == 1)

            clock.set("2026-11-24 07:00", in: "UTC")
            #expect(try await habits.pause(options: me) { $0.habitID = habit.id }.paused)
            try await expectRefused(harness, .failedPrecondition, reason: "HABIT_PAUSED") {
                _ = try await habits.complete(options: me) { $0.habitID = habit.id }
            }
            _ = try await habits.resume(options: me) { $0.habitID = habit.id }
            #expect(try await habits.archive(options: me) { $0.habitID = habit.id }.archived)
            try await expectRefused(harness, .failedPrecondition, reason: "HABIT_ARCHIVED") {
                _ = try await habits.complete(options: me) { $0.habitID = habit.id }
            }
            #expect(try await habits.list(ListHabitsRequest(), options: me).habits.isEmpty)
            #expect(try await habits.list(options: me) { $0.includeArchived = true }.habits.count == 1)
            _ = try await habits.unarchive(options: me) { $0.habitID = habit.id }
            let done = try await habits.complete(options: me) { $0.habitID = habit.id }
            #expect(done.habit.streak == 5)
            #expect(try await !harness.auditRows(action: "habit.completed").isEmpty)
        }
    }

    @Test("bad input: every field named with a clear error, nothing changed; another user's ids are NOT_FOUND")
    func badInput() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let other = try await harness.signIn()
            let me = CallOptions.session(user.token)
            let goals = harness.connection.goals
            let habits = harness.connection.habits
            let goal = try await goals.create(options: me) { $0.goal.title = "Mine" }
            let habit = try await habits.create(options: me) { $0.habit.title = "Mine" }
            let theirs = try await goals.create(options: .session(other.token)) { $0.goal.title = "Theirs" }
            let theirHabit = try await habits.create(options: .session(other.token)) { $0.habit.title = "Theirs" }

            for (field, change) in [
                ("goal.title", { @Sendable (g: inout Goal) in g.title = "" }),
                ("goal.title", { @Sendable (g: inout Goal) in g.title = "   " }),
                ("goal.title", { @Sendable (g: inout Goal) in g.title = String(repeating: "x", count: 256) }),
                ("goal.priority", { @Sendable (g: inout Goal) in g.priority = 6 }),
                ("goal.priority", { @Sendable (g: inout Goal) in g.priority = -1 }),
                ("goal.category", { @Sendable (g: inout Goal) in g.category = "chores" }),
                ("goal.target_date", { @Sendable (g: inout Goal) in g.targetDate = "2026-02-30" }),
                ("goal.target_date", { @Sendable (g: inout Goal) in g.targetDate = "next week" }),
                ("goal.description", { @Sendable (g: inout Goal) in g.description_p = String(repeating: "d", count: 5001) }),
            ] as [(String, @Sendable (inout Goal) -> Void)] {
                try await expectRefused(harness, .invalidArgument, field: field) {
                    _ = try await goals.create(options: me) {
                        $0.goal.title = "Valid"
                        change(&$0.goal)
                    }
                }
            }
            try await expectRefused(harness, .invalidArgument, field: "status") {
                _ = try await goals.list(options: me) { $0.status = "sleeping" }
            }
            try await expectRefused(harness, .invalidArgument, field: "update_mask") {
                _ = try await goals.update(options: me) {
                    $0.goal.id = goal.id
                    $0.updateMask.paths = ["status"]
                }
            }
            try await expectRefused(harness, .invalidArgument, field: "goal_id") {
                _ = try await goals.complete(options: me) { $0.goalID = "7" }
            }
            // Another user's goal: NOT_FOUND, never "forbidden" (which would confirm it exists).
            try await expectRefused(harness, .notFound, reason: "GOAL_NOT_FOUND") {
                _ = try await goals.complete(options: me) { $0.goalID = theirs.id }
            }
            try await expectRefused(harness, .notFound) { _ = try await goals.get(options: me) { $0.goalID = theirs.id } }
            try await expectRefused(harness, .notFound) { _ = try await goals.delete(options: me) { $0.goalID = theirs.id } }
            try await expectRefused(harness, .notFound, reason: "GOAL_NOT_FOUND") {
                _ = try await habits.create(options: me) {
                    $0.habit.title = "Sneaky"
                    $0.habit.goalID = theirs.id
                }
            }
            try await expectRefused(harness, .notFound, reason: "GOAL_NOT_FOUND") {
                _ = try await habits.update(options: me) {
                    $0.habit.id = habit.id
                    $0.habit.goalID = theirs.id
                    $0.updateMask.paths = ["goal_id"]
                }
            }
            try await expectRefused(harness, .notFound, reason: "HABIT_NOT_FOUND") {
                _ = try await habits.complete(options: me) { $0.habitID = theirHabit.id }
            }
            try await expectRefused(harness, .notFound) { _ = try await habits.history(options: me) { $0.habitID = theirHabit.id } }
            for (field, change) in [
                ("habit.title", { @Sendable (h: inout Habit) in h.title = "" }),
                ("habit.title", { @Sendable (h: inout Habit) in h.title = String(repeating: "x", count: 256) }),
                ("habit.frequency", { @Sendable (h: inout Habit) in h.frequency = "hourly" }),
                ("habit.category", { @Sendable (h: inout Habit) in h.category = "fun" }),
                ("habit.goal_id", { @Sendable (h: inout Habit) in h.goalID = "not-a-uuid" }),
            ] as [(String, @Sendable (inout Habit) -> Void)] {
                try await expectRefused(harness, .invalidArgument, field: field) {
                    _ = try await habits.create(options: me) {
                        $0.habit.title = "Valid"
                        change(&$0.habit)
                    }
                }
            }
            try await expectRefused(harness, .invalidArgument, field: "to_date") {
                _ = try await habits.history(options: me) {
                    $0.fromDate = "2026-11-20"
                    $0.toDate = "2026-11-01"
                }
            }
            // Refused attempts are audited as failures.
            let failures = try await harness.query("SELECT count(*) AS n FROM audit_logs WHERE action = 'goal.created' AND status = 'failure'")
            #expect(try failures.first?.require("n", as: Int.self) == 9)
        }
    }
}
