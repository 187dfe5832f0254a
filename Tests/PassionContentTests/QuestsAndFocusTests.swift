import Foundation
import PassionServerAPI
import PassionClient
import PassionIdentity
import PassionRPCServer
import PassionServices
import PassionStore
import PassionTestSupport
import Testing

@Suite("Quests, focus sessions and maintenance through the whole stack")
struct QuestsAndFocusTests {
    @Test("quests move with the events they watch, are claimed once, fail after their end date")
    func quests() async throws {
        let clock = TestClock()
        try await ServiceHarness.with(clock: clock) { harness in
            let user = try await harness.signIn()
            let me = CallOptions.session(user.token)
            let quests = harness.connection.quests
            clock.set("2026-11-20 08:00", in: "UTC")
            let habit = try await harness.connection.habits.create(options: me) { $0.habit.title = "Meditate" }
            let goal = try await harness.connection.goals.create(options: me) { $0.goal.title = "Ship it" }
            // A game server sets the reward; a user's own quest pays none.
            let chain = try await quests.create(options: ServiceHarness.service("everything", asUser: user.id)) {
                $0.quest.title = "Three in a row"
                $0.quest.questType = "habit_chain"
                $0.quest.endDate = "2026-11-30"
                $0.quest.target = 3
                $0.quest.criteria.habitID = habit.id
            }
            #expect(chain.status == "active" && chain.startDate == "2026-11-20" && chain.xpReward == 100 && chain.createdBy == "service:everything")
            let own = try await quests.create(options: me) {
                $0.quest.title = "My own"
                $0.quest.questType = "daily"
                $0.quest.endDate = "2026-11-30"
                $0.quest.target = 1
            }
            #expect(own.xpReward == 0 && own.createdBy == "user")
            try await expectRefused(harness, .invalidArgument, field: "quest.xp_reward") {
                _ = try await quests.create(options: me) {
                    $0.quest.title = "Pay me"
                    $0.quest.questType = "daily"
                    $0.quest.endDate = "2026-11-30"
                    $0.quest.target = 1
                    $0.quest.xpReward = 10_000
                }
            }
            // A service creates one for the user it acts for.
            let daily = try await quests.create(options: ServiceHarness.service("everything", asUser: user.id)) {
                $0.quest.title = "Two check-ins"
                $0.quest.questType = "daily"
                $0.quest.endDate = "2026-11-20"
                $0.quest.target = 2
                $0.quest.xpReward = 40
            }
            #expect(daily.createdBy == "service:everything")
            let goalQuest = try await quests.create(options: me) {
                $0.quest.title = "Finish it"
                $0.quest.questType = "goal_completion"
                $0.quest.endDate = "2026-12-31"
                $0.quest.target = 1
                $0.quest.criteria.goalID = goal.id
            }
            let focusQuest = try await quests.create(options: me) {
                $0.quest.title = "Deep work"
                $0.quest.questType = "milestone"
                $0.quest.endDate = "2026-12-31"
                $0.quest.target = 30
                $0.quest.criteria.metric = "focus_minutes"
            }

            let first = try await harness.connection.habits.complete(options: me) { $0.habitID = habit.id }
            #expect(Set(first.quests.map(\.questID)) == [chain.id, daily.id, own.id])
            let notDone = await expectRPCError(.failedPrecondition) { try await quests.complete(options: me) { $0.questID = chain.id } }
            #expect(notDone?.details?.reason == "QUEST_NOT_DONE" && notDone?.details?.fields["progress"] == "1")
            for day in 21...22 {
                clock.set("2026-11-\(day) 08:00", in: "UTC")
                _ = try await harness.connection.habits.complete(options: me) { $0.habitID = habit.id }
            }
            let claimed = try await quests.complete(options: me) { $0.questID = chain.id }
            #expect(claimed.quest.status == "completed" && claimed.quest.progress == 3)
            #expect(claimed.reward.events.contains { $0.type == .xpAwarded && $0.amount == 100 && $0.reason == "quest_completed" })
            #expect(claimed.reward.events.contains { $0.achievement.slug == "quest_1" })
            let twice = try await quests.complete(options: me) { $0.questID = chain.id }
            #expect(twice.reward.replayed && twice.quest.status == "completed" && twice.reward.events == claimed.reward.events)
            #expect(try await harness.count("SELECT count(*) AS n FROM points_ledger WHERE reason = 'quest_completed'") == 1)

            // The daily quest got one completion on the 20th and ended: read as failed, then the job records it.
            #expect(try await quests.get(options: me) { $0.questID = daily.id }.status == "failed")
            let closed = await expectRPCError(.failedPrecondition) { try await quests.complete(options: me) { $0.questID = daily.id } }
            #expect(closed?.details?.reason == "QUEST_CLOSED")
            #expect(try await quests.list(options: me) { $0.status = "failed" }.quests.map(\.id) == [daily.id])
            // The job works on the content clock (the 22nd), so quests ending later stay active.
            let run = try await harness.connection.maintenance.run(options: ServiceHarness.service("admin")) { $0.job = "expired_quests" }
            #expect(run.affected == 1)
            let failed = try await harness.query("SELECT id FROM quests WHERE status = 'failed'").map { try $0.require("id", as: UUID.self) }
            #expect(failed == [UUID(uuidString: daily.id)])

            let goalDone = try await harness.connection.goals.complete(options: me) { $0.goalID = goal.id }
            #expect(goalDone.quests.map(\.questID) == [goalQuest.id] && goalDone.quests.first?.progress == 1)
            let abandoned = try await quests.abandon(options: me) { $0.questID = focusQuest.id }
            #expect(abandoned.status == "abandoned")
            let session = try await harness.connection.focusSessions.start(options: me) {
                $0.sessionType = "custom"
                $0.durationMinutes = 45
            }
            clock.set(Date(timeIntervalSince1970: clock.now.timeIntervalSince1970 + 40 * 60))
            let focus = try await harness.connection.focusSessions.complete(options: me) { $0.sessionID = session.id }
            #expect(focus.quests.isEmpty, "an abandoned quest does not move")
            #expect(try await quests.get(options: me) { $0.questID = focusQuest.id }.progress == 0)
        }
    }

    @Test("quest bad input: type, criteria, dates, reward, ids of others; nothing written")
    func questBadInput() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let other = try await harness.signIn()
            let me = CallOptions.session(user.token)
            let theirHabit = try await harness.connection.habits.create(options: .session(other.token)) { $0.habit.title = "Theirs" }
            let theirGoal = try await harness.connection.goals.create(options: .session(other.token)) { $0.goal.title = "Theirs" }
            let cases: [(String, @Sendable (inout Quest) -> Void)] = [
                ("quest.title", { $0.title = "" }),
                ("quest.quest_type", { $0.questType = "boss_fight" }),
                ("quest.end_date", { $0.endDate = "" }),
                ("quest.end_date", { $0.endDate = "2000-01-01" }),
                ("quest.end_date", {
                    $0.startDate = "2099-02-01"
                    $0.endDate = "2099-01-01"
                }),
                ("quest.end_date", {
                    $0.startDate = "2099-01-01"
                    $0.endDate = "2101-01-01"
                }),
                ("quest.xp_reward", { $0.xpReward = 10_001 }),
                ("quest.target", { $0.target = 0 }),
                ("quest.criteria.metric", { $0.criteria.metric = "steps" }),
                ("quest.title", { $0.title = String(repeating: "q", count: 256) }),
            ]
            for (field, change) in cases {
                try await expectRefused(harness, .invalidArgument, field: field) {
                    _ = try await harness.connection.quests.create(options: me) {
                        $0.quest.title = "Valid"
                        $0.quest.questType = field == "quest.criteria.metric" ? "milestone" : "habit_chain"
                        $0.quest.endDate = "2099-12-31"
                        $0.quest.target = 3
                        change(&$0.quest)
                    }
                }
            }
            try await expectRefused(harness, .invalidArgument, field: "quest.criteria.goal_id") {
                _ = try await harness.connection.quests.create(options: me) {
                    $0.quest.title = "Valid"
                    $0.quest.questType = "daily"
                    $0.quest.endDate = "2099-12-31"
                    $0.quest.target = 3
                    $0.quest.criteria.goalID = UUID().uuidString
                }
            }
            // Criteria naming another user's habit or goal: NOT_FOUND, as everywhere else.
            try await expectRefused(harness, .notFound, field: "quest.criteria.habit_id", reason: "HABIT_NOT_FOUND") {
                _ = try await harness.connection.quests.create(options: me) {
                    $0.quest.title = "Valid"
                    $0.quest.questType = "habit_chain"
                    $0.quest.endDate = "2099-12-31"
                    $0.quest.target = 3
                    $0.quest.criteria.habitID = theirHabit.id
                }
            }
            try await expectRefused(harness, .notFound, field: "quest.criteria.goal_id", reason: "GOAL_NOT_FOUND") {
                _ = try await harness.connection.quests.create(options: me) {
                    $0.quest.title = "Valid"
                    $0.quest.questType = "goal_completion"
                    $0.quest.endDate = "2099-12-31"
                    $0.quest.target = 1
                    $0.quest.criteria.goalID = theirGoal.id
                }
            }
            try await expectRefused(harness, .invalidArgument, field: "status") {
                _ = try await harness.connection.quests.list(options: me) { $0.status = "won" }
            }
            try await expectRefused(harness, .notFound, reason: "QUEST_NOT_FOUND") {
                _ = try await harness.connection.quests.complete(options: me) { $0.questID = UUID().uuidString }
            }
        }
    }

    @Test("focus: pomodoro from settings, one session at a time, running minutes only, XP by the minute, stats by local day")
    func focus() async throws {
        let clock = TestClock()
        try await ServiceHarness.with(clock: clock) { harness in
            let user = try await harness.signIn()
            let me = CallOptions.session(user.token)
            let focus = harness.connection.focusSessions
            _ = try await harness.connection.userSettings.update(options: me) {
                $0.settings.pomodoroMinutes = 30
                $0.updateMask.paths = ["pomodoro_minutes"]
            }
            clock.set("2026-11-24 09:00", in: "UTC")
            let started = try await focus.start(options: me) { $0.sessionType = "pomodoro" }
            #expect(started.durationMinutes == 30 && started.status == "active")
            try await expectRefused(harness, .failedPrecondition, reason: "FOCUS_SESSION_RUNNING") {
                _ = try await focus.start(options: me) {
                    $0.sessionType = "custom"
                    $0.durationMinutes = 10
                }
            }
            // 10 minutes running, 5 paused, 15 running: 25 minutes of focus.
            clock.set("2026-11-24 09:10", in: "UTC")
            let paused = try await focus.pause(options: me) { $0.sessionID = started.id }
            #expect(paused.status == "paused" && paused.focusedSeconds == 600)
            clock.set("2026-11-24 09:15", in: "UTC")
            _ = try await focus.resume(options: me) { $0.sessionID = started.id }
            clock.set("2026-11-24 09:30", in: "UTC")
            let done = try await focus.complete(options: me) { $0.sessionID = started.id }
            #expect(done.session.actualDurationMinutes == 25 && done.session.status == "completed")
            #expect(done.reward.events.first { $0.type == .xpAwarded }?.amount == 25)
            let again = try await focus.complete(options: me) { $0.sessionID = started.id }
            #expect(again.reward.replayed && again.session.actualDurationMinutes == 25)

            // Longer than planned: the plan is what is credited (minutes, XP, achievements).
            let long = try await focus.start(options: me) {
                $0.sessionType = "custom"
                $0.durationMinutes = 20
            }
            clock.set("2026-11-24 10:10", in: "UTC")
            let overtime = try await focus.complete(options: me) { $0.sessionID = long.id }
            #expect(overtime.session.actualDurationMinutes == 20 && overtime.session.focusedSeconds == 2400)
            #expect(overtime.reward.events.first { $0.type == .xpAwarded }?.amount == 20)
            // 25 + 20 minutes credited: focus_60 is not reached.
            #expect(!overtime.reward.events.contains { $0.achievement.slug == "focus_60" })

            let abandoned = try await focus.start(options: me) { $0.sessionType = "pomodoro" }
            #expect(try await focus.abandon(options: me) { $0.sessionID = abandoned.id }.status == "abandoned")
            try await expectRefused(harness, .failedPrecondition, reason: "FOCUS_SESSION_ENDED") {
                _ = try await focus.resume(options: me) { $0.sessionID = abandoned.id }
            }
            clock.set("2026-11-25 10:00", in: "UTC")
            let stats = try await focus.stats(FocusStatsRequest(), options: me)
            #expect(stats.days.map(\.date) == ["2026-11-24"] && stats.days.first?.minutes == 45 && stats.days.first?.sessions == 2)
            #expect(stats.weeks.map(\.date) == ["2026-11-23"] && stats.totalMinutes == 45)
            let list = try await focus.list(options: me) { $0.status = "completed" }
            #expect(list.sessions.count == 2)

            for (field, change) in [
                ("session_type", { @Sendable (r: inout StartFocusRequest) in r.sessionType = "nap" }),
                ("duration_minutes", { @Sendable (r: inout StartFocusRequest) in
                    r.sessionType = "custom"
                    r.durationMinutes = 481
                }),
                ("duration_minutes", { @Sendable (r: inout StartFocusRequest) in
                    r.sessionType = "custom"
                    r.durationMinutes = 0
                }),
                ("duration_minutes", { @Sendable (r: inout StartFocusRequest) in r.durationMinutes = 5 }),
                ("goal_id", { @Sendable (r: inout StartFocusRequest) in r.goalID = "x" }),
            ] as [(String, @Sendable (inout StartFocusRequest) -> Void)] {
                try await expectRefused(harness, .invalidArgument, field: field) {
                    _ = try await focus.start(options: me) {
                        $0.sessionType = "pomodoro"
                        change(&$0)
                    }
                }
            }
            try await expectRefused(harness, .invalidArgument, field: "settings.pomodoro_minutes") {
                _ = try await harness.connection.userSettings.update(options: me) {
                    $0.settings.pomodoroMinutes = 0
                    $0.updateMask.paths = ["pomodoro_minutes"]
                }
            }
        }
    }

    @Test("maintenance: jobs on demand for admins, goals archived 30 days after completion, integrity check healthy")
    func maintenance() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let me = CallOptions.session(user.token)
            let old = try await harness.connection.goals.create(options: me) { $0.goal.title = "Old" }
            let recent = try await harness.connection.goals.create(options: me) { $0.goal.title = "Recent" }
            _ = try await harness.connection.goals.complete(options: me) { $0.goalID = old.id }
            _ = try await harness.connection.goals.complete(options: me) { $0.goalID = recent.id }
            _ = try await harness.query("UPDATE goals SET completed_at = now() - interval '31 days' WHERE id = \(UUID(uuidString: old.id))")
            let admin = ServiceHarness.service("admin")
            let run = try await harness.connection.maintenance.run(options: admin) { $0.job = "archive_goals" }
            #expect(run.job == "archive_goals" && run.affected == 1)
            #expect(try await harness.connection.goals.get(options: me) { $0.goalID = old.id }.archived)
            #expect(try await harness.connection.goals.get(options: me) { $0.goalID = recent.id }.archived == false)
            #expect(try await harness.connection.maintenance.run(options: admin) { $0.job = "archive_goals" }.affected == 0)
            _ = try await harness.query("UPDATE sessions SET created_at = now() - interval '40 days', last_activity = now() - interval '40 days', expires_at = now() - interval '31 days' WHERE user_id = \(UUID(uuidString: user.id))")
            let purge = try await harness.connection.maintenance.run(options: admin) { $0.job = "expired_sessions" }
            #expect(purge.job == "expired_sessions" && purge.affected == 1)
            #expect(try await harness.count("SELECT count(*) AS n FROM sessions WHERE user_id = \(UUID(uuidString: user.id))") == 0)
            #expect(try await !harness.auditRows(action: "maintenance.archive_goals").isEmpty)
            try await expectRefused(harness, .invalidArgument, field: "job") {
                _ = try await harness.connection.maintenance.run(options: admin) { $0.job = "defragment" }
            }
            #expect(try await harness.auditRows(action: "maintenance.run").first?.require("status", as: String.self) == "failure")
            #expect(try await harness.connection.maintenance.integrityCheck(IntegrityCheckRequest(), options: admin).problems.isEmpty)
            // A corrupted total shows up.
            _ = try await harness.query("ALTER TABLE user_progress DISABLE TRIGGER USER")
            _ = try await harness.query("UPDATE user_progress SET total_coins = total_coins + 1 WHERE user_id = \(UUID(uuidString: user.id))")
            _ = try await harness.query("ALTER TABLE user_progress ENABLE TRIGGER USER")
            let problems = try await harness.connection.maintenance.integrityCheck(IntegrityCheckRequest(), options: admin).problems
            #expect(problems.map(\.check) == ["progress_coins_mismatch"])
            // The daily scheduler runs each job once a day across instances.
            let maintenance = SessionMaintenance(pool: harness.pool)
            #expect(try await maintenance.runIfDue(.streaks) != nil)
            #expect(try await maintenance.runIfDue(.streaks) == nil)

            // One instance at a time: while another holds a job's lock, the scheduler skips the
            // job and an admin run waits for the lock, then runs.
            let holder = try PostgresConnection(conninfo: harness.pool.configuration.conninfo)
            try await holder.execute("BEGIN; SELECT pg_advisory_xact_lock(hashtext('passion.maintenance.archive_goals'))")
            _ = try await harness.query("DELETE FROM maintenance_runs")
            #expect(try await maintenance.runIfDue(.archiveGoals) == nil)
            #expect(try await harness.count("SELECT count(*) AS n FROM maintenance_runs") == 0)
            let waiting = Task { try await harness.connection.maintenance.run(options: admin) { $0.job = "archive_goals" } }
            let queued: SQL = """
                SELECT count(*) AS n FROM pg_locks
                WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                """
            var waiters = 0
            for _ in 0..<1000 where waiters == 0 {
                waiters = try await harness.count(queued)
                if waiters == 0 { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(waiters == 1, "the admin run does not wait for the lock")
            #expect(try await harness.count("SELECT count(*) AS n FROM maintenance_runs") == 0)
            try await holder.execute("COMMIT")
            #expect(try await waiting.value.affected == 0)
            // The admin run counts as the day's run.
            #expect(try await maintenance.runIfDue(.archiveGoals) == nil)
        }
    }
}
