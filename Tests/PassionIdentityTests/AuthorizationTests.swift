import Foundation
import PassionServerAPI
import PassionClient
import PassionIdentity
import PassionServices
import PassionStore
import PassionTestSupport
import Testing
import PassionRPCServer

/// Every method of every service, called as nobody, as a service without the scope it needs,
/// and as user A while user B exists: nobody and the scope-less service are refused before the
/// handler, A never sees or changes anything of B's. Add each new service's methods here; the
/// coverage check fails until they are.
@Suite("Authorization: every method, every kind of caller")
struct AuthorizationTests {
    struct Parties {
        var a: ServiceHarness.SignedIn
        var b: ServiceHarness.SignedIn
        /// B's content: A's calls name these and must get NOT_FOUND.
        var bGoal = ""
        var bHabit = ""
        var bCompletion = ""
        var bQuest = ""
        var bFocus = ""
    }

    /// A call on B's resource: NOT_FOUND, as if it did not exist.
    static func notFound<T>(_ body: () async throws -> T) async {
        await expectRPCError(.notFound) { try await body() }
    }

    /// An own goal/habit of the caller, for calls that need an id.
    static func goal(_ h: ServiceHarness, _ o: CallOptions) async throws -> String {
        try await h.connection.goals.create(options: o) { $0.goal.title = "own" }.id
    }

    static func habit(_ h: ServiceHarness, _ o: CallOptions) async throws -> String {
        try await h.connection.habits.create(options: o) { $0.habit.title = "own" }.id
    }

    static func quest(_ h: ServiceHarness, _ o: CallOptions) async throws -> String {
        try await h.connection.quests.create(options: o) {
            $0.quest.title = "own"
            $0.quest.questType = "daily"
            $0.quest.endDate = "2099-01-01"
            $0.quest.target = 1
        }.id
    }

    /// A running focus session of the caller (abandoning any other first).
    static func focus(_ h: ServiceHarness, _ o: CallOptions) async throws -> String {
        for running in try await h.connection.focusSessions.list(options: o, { $0.status = "active" }).sessions {
            _ = try await h.connection.focusSessions.abandon(options: o) { $0.sessionID = running.id }
        }
        return try await h.connection.focusSessions.start(options: o) { $0.sessionType = "pomodoro" }.id
    }

    /// Calls one method with `options`; where it takes a user id, it names B's.
    typealias Call = @Sendable (ServiceHarness, CallOptions, Parties) async throws -> Void

    static let table: [String: Call] = [
        Auth.Method.signIn.fullName: { h, o, _ in
            _ = try await h.connection.auth.signIn(options: o) {
                $0.identity = VerifiedIdentity.with {
                    $0.provider = .google
                    $0.providerUserID = "table-\(UUID())"
                    $0.email = "table-\(UUID())@example.com"
                }
            }
        },
        Auth.Method.signOut.fullName: { h, o, _ in _ = try await h.connection.auth.signOut(SignOutRequest(), options: o) },
        Auth.Method.signOutEverywhere.fullName: { h, o, _ in
            _ = try await h.connection.auth.signOutEverywhere(SignOutEverywhereRequest(), options: o)
        },
        Auth.Method.listSessions.fullName: { h, o, p in
            let sessions = try await h.connection.auth.listSessions(ListSessionsRequest(), options: o)
            // A's own sessions only: B's session id never appears.
            let bHash = try #require(SessionToken.hash(p.b.token))
            #expect(!sessions.sessions.contains { $0.id == SessionToken.displayID(hash: bHash) })
        },
        Auth.Method.purgeExpiredSessions.fullName: { h, o, _ in
            _ = try await h.connection.auth.purgeExpiredSessions(PurgeExpiredSessionsRequest(), options: o)
        },
        Users.Method.me.fullName: { h, o, p in
            let me = try await h.connection.users.me(MeRequest(), options: o)
            #expect(me.id != p.b.id)
        },
        Users.Method.updateProfile.fullName: { h, o, _ in
            _ = try await h.connection.users.updateProfile(options: o) {
                $0.displayName = "renamed"
                $0.updateMask.paths = ["display_name"]
            }
        },
        Users.Method.deleteAccount.fullName: { h, o, _ in _ = try await h.connection.users.deleteAccount(DeleteAccountRequest(), options: o) },
        Users.Method.getUser.fullName: { h, o, p in _ = try await h.connection.users.getUser(options: o) { $0.userID = p.b.id } },
        Users.Method.listUsers.fullName: { h, o, _ in _ = try await h.connection.users.listUsers(ListUsersRequest(), options: o) },
        Users.Method.restoreUser.fullName: { h, o, p in _ = try await h.connection.users.restoreUser(options: o) { $0.userID = p.b.id } },
        Settings.Method.get.fullName: { h, o, _ in _ = try await h.connection.userSettings.get(GetSettingsRequest(), options: o) },
        Settings.Method.update.fullName: { h, o, _ in
            _ = try await h.connection.userSettings.update(options: o) {
                $0.settings.theme = "dark"
                $0.updateMask.paths = ["theme"]
            }
        },
        Audit.Method.recentActivity.fullName: { h, o, _ in
            let activity = try await h.connection.audit.recentActivity(RecentActivityRequest(), options: o)
            // B signed in and changed settings; none of that shows up for A.
            #expect(!activity.activities.contains { $0.action == "settings.updated" })
        },
        Audit.Method.query.fullName: { h, o, p in _ = try await h.connection.audit.query(options: o) { $0.userID = p.b.id } },
        PassionAPI.Progress.Method.getProgress.fullName: { h, o, p in
            let progress = try await h.connection.progress.getProgress(GetProgressRequest(), options: o)
            #expect(progress.userID != p.b.id)
        },
        PassionAPI.Progress.Method.awardXP.fullName: { h, o, p in
            _ = try await h.connection.progress.awardXP(options: o) {
                $0.userID = p.b.id
                $0.points = 10
                $0.reason = "grant"
                $0.idempotencyKey = "table-\(UUID())"
            }
        },
        PassionAPI.Progress.Method.awardCoins.fullName: { h, o, p in
            _ = try await h.connection.progress.awardCoins(options: o) {
                $0.userID = p.b.id
                $0.coins = 10
                $0.reason = "grant"
                $0.idempotencyKey = "table-\(UUID())"
            }
        },
        PassionAPI.Progress.Method.spendCoins.fullName: { h, o, p in
            _ = try await h.connection.progress.spendCoins(options: o) {
                $0.userID = p.b.id
                $0.price = 1
                $0.idempotencyKey = "table-\(UUID())"
            }
        },
        PassionAPI.Progress.Method.refundCoins.fullName: { h, o, p in
            _ = try await h.connection.progress.refundCoins(options: o) {
                $0.userID = p.b.id
                $0.refundOf = 1
                $0.idempotencyKey = "table-\(UUID())"
            }
        },
        PassionAPI.Progress.Method.listPointsLedger.fullName: { h, o, p in
            let page = try await h.connection.progress.listPointsLedger(ListLedgerRequest(), options: o)
            #expect(page.entries.isEmpty, "B's award must not show up for A")
        },
        PassionAPI.Progress.Method.listCoinsLedger.fullName: { h, o, _ in
            _ = try await h.connection.progress.listCoinsLedger(ListLedgerRequest(), options: o)
        },
        PassionAPI.Progress.Method.awardBatch.fullName: { h, o, p in
            _ = try await h.connection.progress.awardBatch(options: o) {
                $0.awards = [BatchAward.with {
                    $0.userID = p.b.id
                    $0.kind = .xp
                    $0.amount = 3
                    $0.reason = "grant"
                    $0.idempotencyKey = "table-\(UUID())"
                }]
            }
        },
        PassionAPI.Progress.Method.leaderboard.fullName: { h, o, p in
            let board = try await h.connection.progress.leaderboard(LeaderboardRequest(), options: o)
            // B is on the board (public by design), but "me" is the caller.
            #expect(board.me.userID != p.b.id)
        },
        Achievements.Method.catalog.fullName: { h, o, _ in _ = try await h.connection.achievements.catalog(CatalogRequest(), options: o) },
        Achievements.Method.mine.fullName: { h, o, _ in
            let mine = try await h.connection.achievements.mine(MineRequest(), options: o)
            // B's grant unlocked first_steps for B only.
            #expect(!mine.achievements.contains { $0.unlocked })
        },
        Achievements.Method.define.fullName: { h, o, _ in
            _ = try await h.connection.achievements.define(options: o) {
                $0.achievement = Achievement.with {
                    $0.slug = "table_\(UUID().uuidString.prefix(8).lowercased())"
                    $0.title = "Table"
                    $0.category = "progress"
                    $0.rarity = "common"
                    $0.condition = UnlockCondition.with {
                        $0.type = "total_xp"
                        $0.value = 1_000_000
                    }
                }
            }
        },
        Achievements.Method.update.fullName: { h, o, _ in
            let first = try await h.connection.achievements.catalog(CatalogRequest(), options: ServiceHarness.service("admin"))
            _ = try await h.connection.achievements.update(options: o) {
                $0.achievement.id = first.achievements.first?.id ?? ""
                $0.achievement.title = "Renamed"
                $0.updateMask.paths = ["title"]
            }
        },
        Achievements.Method.retire.fullName: { h, o, _ in
            let first = try await h.connection.achievements.catalog(CatalogRequest(), options: ServiceHarness.service("admin"))
            _ = try await h.connection.achievements.retire(options: o) { $0.achievementID = first.achievements.last?.id ?? "" }
        },
        Achievements.Method.evaluate.fullName: { h, o, p in
            _ = try await h.connection.achievements.evaluate(options: o) { $0.userID = p.b.id }
        },
        ProgressAdmin.Method.reconcile.fullName: { h, o, _ in
            _ = try await h.connection.progressAdmin.reconcile(ReconcileRequest(), options: o)
        },
        ProgressAdmin.Method.stats.fullName: { h, o, _ in _ = try await h.connection.progressAdmin.stats(StatsRequest(), options: o) },
        PassionAPI.Progress.Method.subscribe.fullName: { h, o, p in
            // From the beginning: B's award is stored, but only the caller's own events come.
            let request = SubscribeRequest.with {
                $0.afterEventID = 1
                $0.heartbeatSeconds = 1
            }
            let stream = try await h.connection.progress.subscribe(request, options: o)
            for try await item in stream {
                if case .event(let event)? = item.item { #expect(event.userID != p.b.id) }
                if case .heartbeat? = item.item { break }
            }
        },
        Goals.Method.create.fullName: { h, o, _ in _ = try await goal(h, o) },
        Goals.Method.get.fullName: { h, o, p in
            let id = try await goal(h, o)
            _ = try await h.connection.goals.get(options: o) { $0.goalID = id }
            await notFound { try await h.connection.goals.get(options: o) { $0.goalID = p.bGoal } }
        },
        Goals.Method.list.fullName: { h, o, p in
            let goals = try await h.connection.goals.list(ListGoalsRequest(), options: o)
            #expect(!goals.goals.contains { $0.id == p.bGoal })
        },
        Goals.Method.update.fullName: { h, o, p in
            let id = try await goal(h, o)
            _ = try await h.connection.goals.update(options: o) {
                $0.goal.id = id
                $0.goal.title = "renamed"
                $0.updateMask.paths = ["title"]
            }
            await notFound {
                try await h.connection.goals.update(options: o) {
                    $0.goal.id = p.bGoal
                    $0.goal.title = "renamed"
                    $0.updateMask.paths = ["title"]
                }
            }
        },
        Goals.Method.complete.fullName: { h, o, p in
            let id = try await goal(h, o)
            _ = try await h.connection.goals.complete(options: o) { $0.goalID = id }
            await notFound { try await h.connection.goals.complete(options: o) { $0.goalID = p.bGoal } }
        },
        Goals.Method.abandon.fullName: { h, o, p in
            let id = try await goal(h, o)
            _ = try await h.connection.goals.abandon(options: o) { $0.goalID = id }
            await notFound { try await h.connection.goals.abandon(options: o) { $0.goalID = p.bGoal } }
        },
        Goals.Method.delete.fullName: { h, o, p in
            let id = try await goal(h, o)
            _ = try await h.connection.goals.delete(options: o) { $0.goalID = id }
            await notFound { try await h.connection.goals.delete(options: o) { $0.goalID = p.bGoal } }
        },
        Goals.Method.restore.fullName: { h, o, p in
            let id = try await goal(h, o)
            _ = try await h.connection.goals.restore(options: o) { $0.goalID = id }
            await notFound { try await h.connection.goals.restore(options: o) { $0.goalID = p.bGoal } }
        },
        Goals.Method.archive.fullName: { h, o, p in
            let id = try await goal(h, o)
            _ = try await h.connection.goals.archive(options: o) { $0.goalID = id }
            await notFound { try await h.connection.goals.archive(options: o) { $0.goalID = p.bGoal } }
        },
        Goals.Method.unarchive.fullName: { h, o, p in
            let id = try await goal(h, o)
            _ = try await h.connection.goals.unarchive(options: o) { $0.goalID = id }
            await notFound { try await h.connection.goals.unarchive(options: o) { $0.goalID = p.bGoal } }
        },
        Goals.Method.dashboard.fullName: { h, o, p in
            let dashboard = try await h.connection.goals.dashboard(DashboardRequest(), options: o)
            #expect(dashboard.userID != p.b.id)
        },
        Habits.Method.create.fullName: { h, o, _ in _ = try await habit(h, o) },
        Habits.Method.get.fullName: { h, o, p in
            let id = try await habit(h, o)
            _ = try await h.connection.habits.get(options: o) { $0.habitID = id }
            await notFound { try await h.connection.habits.get(options: o) { $0.habitID = p.bHabit } }
        },
        Habits.Method.list.fullName: { h, o, p in
            let habits = try await h.connection.habits.list(ListHabitsRequest(), options: o)
            #expect(!habits.habits.contains { $0.id == p.bHabit })
        },
        Habits.Method.update.fullName: { h, o, p in
            let id = try await habit(h, o)
            _ = try await h.connection.habits.update(options: o) {
                $0.habit.id = id
                $0.habit.title = "renamed"
                $0.updateMask.paths = ["title"]
            }
            await notFound {
                try await h.connection.habits.update(options: o) {
                    $0.habit.id = p.bHabit
                    $0.habit.title = "renamed"
                    $0.updateMask.paths = ["title"]
                }
            }
        },
        Habits.Method.pause.fullName: { h, o, p in
            let id = try await habit(h, o)
            _ = try await h.connection.habits.pause(options: o) { $0.habitID = id }
            await notFound { try await h.connection.habits.pause(options: o) { $0.habitID = p.bHabit } }
        },
        Habits.Method.resume.fullName: { h, o, p in
            let id = try await habit(h, o)
            _ = try await h.connection.habits.resume(options: o) { $0.habitID = id }
            await notFound { try await h.connection.habits.resume(options: o) { $0.habitID = p.bHabit } }
        },
        Habits.Method.archive.fullName: { h, o, p in
            let id = try await habit(h, o)
            _ = try await h.connection.habits.archive(options: o) { $0.habitID = id }
            await notFound { try await h.connection.habits.archive(options: o) { $0.habitID = p.bHabit } }
        },
        Habits.Method.unarchive.fullName: { h, o, p in
            let id = try await habit(h, o)
            _ = try await h.connection.habits.unarchive(options: o) { $0.habitID = id }
            await notFound { try await h.connection.habits.unarchive(options: o) { $0.habitID = p.bHabit } }
        },
        Habits.Method.complete.fullName: { h, o, p in
            let id = try await habit(h, o)
            _ = try await h.connection.habits.complete(options: o) { $0.habitID = id }
            await notFound { try await h.connection.habits.complete(options: o) { $0.habitID = p.bHabit } }
        },
        Habits.Method.uncomplete.fullName: { h, o, p in
            let id = try await habit(h, o)
            let completion = try await h.connection.habits.complete(options: o) { $0.habitID = id }.completion.id
            _ = try await h.connection.habits.uncomplete(options: o) { $0.completionID = completion }
            await notFound { try await h.connection.habits.uncomplete(options: o) { $0.completionID = p.bCompletion } }
        },
        Habits.Method.today.fullName: { h, o, p in
            let today = try await h.connection.habits.today(TodayRequest(), options: o)
            #expect(!today.habits.contains { $0.habit.id == p.bHabit })
        },
        Habits.Method.history.fullName: { h, o, p in
            let history = try await h.connection.habits.history(HistoryRequest(), options: o)
            #expect(!history.completions.contains { $0.habitID == p.bHabit })
            await notFound { try await h.connection.habits.history(options: o) { $0.habitID = p.bHabit } }
        },
        Quests.Method.create.fullName: { h, o, _ in _ = try await quest(h, o) },
        Quests.Method.get.fullName: { h, o, p in
            let id = try await quest(h, o)
            _ = try await h.connection.quests.get(options: o) { $0.questID = id }
            await notFound { try await h.connection.quests.get(options: o) { $0.questID = p.bQuest } }
        },
        Quests.Method.list.fullName: { h, o, p in
            let quests = try await h.connection.quests.list(ListQuestsRequest(), options: o)
            #expect(!quests.quests.contains { $0.id == p.bQuest })
        },
        Quests.Method.complete.fullName: { h, o, p in
            // A's own quest is not done yet: refused for that, not for who asks.
            let id = try await quest(h, o)
            await expectRPCError(.failedPrecondition) { try await h.connection.quests.complete(options: o) { $0.questID = id } }
            await notFound { try await h.connection.quests.complete(options: o) { $0.questID = p.bQuest } }
        },
        Quests.Method.abandon.fullName: { h, o, p in
            let id = try await quest(h, o)
            _ = try await h.connection.quests.abandon(options: o) { $0.questID = id }
            await notFound { try await h.connection.quests.abandon(options: o) { $0.questID = p.bQuest } }
        },
        FocusSessions.Method.start.fullName: { h, o, _ in _ = try await focus(h, o) },
        FocusSessions.Method.pause.fullName: { h, o, p in
            let id = try await focus(h, o)
            _ = try await h.connection.focusSessions.pause(options: o) { $0.sessionID = id }
            await notFound { try await h.connection.focusSessions.pause(options: o) { $0.sessionID = p.bFocus } }
        },
        FocusSessions.Method.resume.fullName: { h, o, p in
            let id = try await focus(h, o)
            _ = try await h.connection.focusSessions.resume(options: o) { $0.sessionID = id }
            await notFound { try await h.connection.focusSessions.resume(options: o) { $0.sessionID = p.bFocus } }
        },
        FocusSessions.Method.complete.fullName: { h, o, p in
            let id = try await focus(h, o)
            _ = try await h.connection.focusSessions.complete(options: o) { $0.sessionID = id }
            await notFound { try await h.connection.focusSessions.complete(options: o) { $0.sessionID = p.bFocus } }
        },
        FocusSessions.Method.abandon.fullName: { h, o, p in
            let id = try await focus(h, o)
            _ = try await h.connection.focusSessions.abandon(options: o) { $0.sessionID = id }
            await notFound { try await h.connection.focusSessions.abandon(options: o) { $0.sessionID = p.bFocus } }
        },
        FocusSessions.Method.list.fullName: { h, o, p in
            let sessions = try await h.connection.focusSessions.list(ListFocusSessionsRequest(), options: o)
            #expect(!sessions.sessions.contains { $0.id == p.bFocus })
        },
        FocusSessions.Method.stats.fullName: { h, o, _ in
            let stats = try await h.connection.focusSessions.stats(FocusStatsRequest(), options: o)
            #expect(stats.totalMinutes == 0, "B's focus must not count for A")
        },
        Maintenance.Method.run.fullName: { h, o, _ in _ = try await h.connection.maintenance.run(options: o) { $0.job = "streaks" } },
        Maintenance.Method.integrityCheck.fullName: { h, o, _ in
            _ = try await h.connection.maintenance.integrityCheck(IntegrityCheckRequest(), options: o)
        },
    ]

    @Test("the table covers every method the server hosts")
    func coverage() async throws {
        try await ServiceHarness.with { harness in
            let hosted = Set(RPCRouter(services: harness.identity.services).descriptors.map(\.fullName))
            #expect(hosted == Set(Self.table.keys), "methods missing from the table: \(hosted.subtracting(Self.table.keys).sorted())")
        }
    }

    @Test("as nobody, as a service without the scope, and as user A against user B", arguments: Self.table.keys.sorted())
    func method(_ name: String) async throws {
        let call = try #require(Self.table[name])
        try await ServiceHarness.with { harness in
            let descriptor = try #require(RPCRouter(services: harness.identity.services).descriptors.first { $0.fullName == name })
            let a = try await harness.signIn()
            let b = try await harness.signIn()
            _ = try await harness.connection.userSettings.update(options: .session(b.token)) {
                $0.settings.language = "de"
                $0.updateMask.paths = ["language"]
            }
            // B has progress of its own that A must never see or change.
            _ = try await harness.connection.progress.awardXP(options: ServiceHarness.service("everything")) {
                $0.userID = b.id
                $0.points = 5
                $0.reason = "grant"
                $0.idempotencyKey = "b-setup"
            }
            // And content of its own, with a completed focus session.
            let bOptions = CallOptions.session(b.token)
            var parties = Parties(a: a, b: b)
            parties.bGoal = try await Self.goal(harness, bOptions)
            parties.bHabit = try await Self.habit(harness, bOptions)
            parties.bCompletion = try await harness.connection.habits.complete(options: bOptions) { $0.habitID = parties.bHabit }.completion.id
            parties.bQuest = try await Self.quest(harness, bOptions)
            let done = try await Self.focus(harness, bOptions)
            _ = try await harness.query("UPDATE focus_sessions SET running_since = running_since - interval '5 minutes' WHERE id = \(UUID(uuidString: done))")
            _ = try await harness.connection.focusSessions.complete(options: bOptions) { $0.sessionID = done }
            parties.bFocus = try await Self.focus(harness, bOptions)
            let bBefore = try await Self.state(of: b, harness)

            await expectRPCError(.unauthenticated) { try await call(harness, CallOptions(), parties) }
            // A scope-less service, acting for B where the method is the user's.
            await expectRPCError(.permissionDenied) { try await call(harness, ServiceHarness.service("noscope", asUser: b.id), parties) }

            switch descriptor.principal {
            case .service, .admin:
                await expectRPCError(.permissionDenied) { try await call(harness, .session(a.token), parties) }
            case .user:
                try await call(harness, .session(a.token), parties)
                // A service holding the scope may act for A: the policy lets it through (the handler
                // may still refuse: A's account is gone after DeleteAccount, a service has no
                // session to SignOut).
                do {
                    try await call(harness, ServiceHarness.service("everything", asUser: a.id), parties)
                } catch let error as RPCError {
                    #expect(![.unauthenticated, .permissionDenied].contains(error.code), "\(name): \(error)")
                }
            case .userOrService:
                try await call(harness, .session(a.token), parties)
                try await call(harness, ServiceHarness.service("everything", asUser: a.id), parties)
            case .anyone:
                Issue.record("\(name) needs no principal: application methods all do")
            }
            #expect(try await Self.state(of: b, harness) == bBefore, "\(name) called by A changed B")
        }
    }

    /// Everything of B's that A's calls could touch.
    static func state(of user: ServiceHarness.SignedIn, _ harness: ServiceHarness) async throws -> String {
        let id = UUID(uuidString: user.id)
        let rows = try await harness.query("""
            SELECT (SELECT row(u.*)::text FROM users u WHERE id = \(id)) || '|'
                || (SELECT coalesce(string_agg(row(s.*)::text, ',' ORDER BY s.id), '') FROM sessions s WHERE user_id = \(id)) || '|'
                || (SELECT coalesce(row(t.*)::text, '') FROM user_settings t WHERE user_id = \(id)) || '|'
                || (SELECT coalesce(row(p.*)::text, '') FROM user_progress p WHERE user_id = \(id)) || '|'
                || (SELECT count(*) FROM points_ledger WHERE user_id = \(id)) || '/' || (SELECT count(*) FROM coins_ledger WHERE user_id = \(id))
                || '|' || (SELECT coalesce(string_agg(row(g.*)::text, ',' ORDER BY g.id), '') FROM goals g WHERE user_id = \(id))
                || '|' || (SELECT coalesce(string_agg(row(x.*)::text, ',' ORDER BY x.id), '') FROM habits x WHERE user_id = \(id))
                || '|' || (SELECT count(*) FROM habit_completions WHERE user_id = \(id))
                || '|' || (SELECT coalesce(string_agg(row(q.*)::text, ',' ORDER BY q.id), '') FROM quests q WHERE user_id = \(id))
                || '|' || (SELECT coalesce(string_agg(row(f.*)::text, ',' ORDER BY f.id), '') FROM focus_sessions f WHERE user_id = \(id))
                AS state
            """)
        return try rows.first?.require("state", as: String.self) ?? ""
    }
}
