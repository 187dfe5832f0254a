import Foundation
import PassionServerAPI
import PassionClient
import PassionRPCServer
import PassionStore
import PassionTestSupport
import Testing

@Suite("Achievements and progress administration")
struct AchievementsTests {
    static let admin = ServiceHarness.service("admin")
    static let writer = ServiceHarness.service("progress")

    @Test("the default catalog: at least 20 across every category and rarity, every rule type used")
    func catalog() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let catalog = try await harness.connection.achievements.catalog(CatalogRequest(), options: .session(user.token))
            #expect(catalog.achievements.count >= 20)
            #expect(Set(catalog.achievements.map(\.category)) == ["progress", "social", "challenge"])
            #expect(Set(catalog.achievements.map(\.rarity)) == ["common", "rare", "epic", "legendary"])
            #expect(Set(catalog.achievements.map(\.condition.type)) == [
                "habit_streak", "total_xp", "goals_completed", "level", "completions", "focus_minutes", "quests_completed", "coins_earned",
            ])
        }
    }

    @Test("Mine: unlocked first, then locked with progress toward each")
    func mine() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            _ = try await harness.connection.progress.awardXP(options: Self.writer) {
                $0.userID = user.id
                $0.points = 400
                $0.reason = "grant"
                $0.idempotencyKey = "xp"
            }
            let mine = try await harness.connection.achievements.mine(MineRequest(), options: .session(user.token))
            let unlocked = mine.achievements.prefix { $0.unlocked }
            #expect(unlocked.map(\.achievement.slug) == ["first_steps"])
            let xp500 = try #require(mine.achievements.first { $0.achievement.slug == "xp_500" })
            #expect(!xp500.unlocked && xp500.current == 410 && xp500.target == 500)
            // The closest locked achievement comes right after the unlocked ones.
            #expect(mine.achievements.dropFirst(unlocked.count).first?.achievement.slug == "xp_500")
        }
    }

    @Test("Define validates the rule; Evaluate unlocks it with its rewards once; Retire stops new unlocks")
    func defineEvaluateRetire() async throws {
        try await ServiceHarness.with { harness in
            let achievements = harness.connection.achievements
            let before = try await harness.count("SELECT count(*) AS n FROM achievements")
            let cases: [(String, @Sendable (inout Achievement) -> Void)] = [
                ("achievement.condition.type", { @Sendable in $0.condition.type = "logins" }),
                ("achievement.condition.value", { @Sendable in $0.condition.value = 0 }),
                ("achievement.slug", { @Sendable in $0.slug = "Bad Slug" }),
                ("achievement.rarity", { @Sendable in $0.rarity = "mythic" }),
                ("achievement.xp_reward", { @Sendable in $0.xpReward = -1 }),
            ]
            for (field, change) in cases {
                let error = await expectRPCError(.invalidArgument) {
                    try await achievements.define(options: Self.admin) {
                        var achievement = Self.sample()
                        change(&achievement)
                        $0.achievement = achievement
                    }
                }
                #expect(error?.details?.fields["field"] == field)
            }
            #expect(try await harness.count("SELECT count(*) AS n FROM achievements") == before)

            let defined = try await achievements.define(options: Self.admin) { $0.achievement = Self.sample() }
            let user = try await harness.signIn()
            // Content outside the reward engine: a completed goal, then Evaluate.
            _ = try await harness.query("""
                INSERT INTO goals (user_id, title, category, status) VALUES (\(UUID(uuidString: user.id)), 'Done', 'health', 'completed')
                """)
            let evaluated = try await achievements.evaluate(options: Self.writer) { $0.userID = user.id }
            let slugs = evaluated.events.filter { $0.type == .achievementUnlocked }.map(\.achievement.slug)
            #expect(slugs.contains("goal_1") && slugs.contains("finisher"))
            #expect(evaluated.progress.achievementsUnlocked == Int32(slugs.count))
            // goal_1 pays 50 XP + 20 coins, finisher 7 XP + 3 coins, first_steps (reached by them) 10 + 5.
            #expect(evaluated.progress.totalXp == 67 && evaluated.progress.totalCoins == 28)
            let again = try await achievements.evaluate(options: Self.writer) { $0.userID = user.id }
            #expect(again.events.isEmpty && again.progress == evaluated.progress)

            let retired = try await achievements.retire(options: Self.admin) { $0.achievementID = defined.id }
            #expect(retired.retired)
            let other = try await harness.signIn()
            _ = try await harness.query("""
                INSERT INTO goals (user_id, title, category, status) VALUES (\(UUID(uuidString: other.id)), 'Done', 'health', 'completed')
                """)
            let otherEvaluated = try await achievements.evaluate(options: Self.writer) { $0.userID = other.id }
            #expect(!otherEvaluated.events.contains { $0.achievement.slug == "finisher" })
            let catalog = try await achievements.catalog(CatalogRequest(), options: Self.admin)
            #expect(!catalog.achievements.contains { $0.id == defined.id })
            // The first user keeps it.
            let mine = try await achievements.mine(MineRequest(), options: .session(user.token))
            #expect(mine.achievements.contains { $0.achievement.id == defined.id && $0.unlocked })
        }
    }

    @Test("Reconcile finds nothing on engine-written data and names a tampered total; Stats has the seed's two views")
    func reconcileAndStats() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            _ = try await harness.connection.progress.awardXP(options: Self.writer) {
                $0.userID = user.id
                $0.points = 600
                $0.reason = "grant"
                $0.idempotencyKey = "xp"
            }
            let admin = harness.connection.progressAdmin
            let clean = try await admin.reconcile(ReconcileRequest(), options: Self.admin)
            #expect(clean.differences.isEmpty && clean.usersChecked == 1)
            // Tamper behind the triggers' back, as a broken migration or manual fix might.
            _ = try await harness.query("""
                ALTER TABLE user_progress DISABLE TRIGGER user_progress_derived_totals;
                """)
            _ = try await harness.query("UPDATE user_progress SET total_coins = total_coins + 7 WHERE user_id = \(UUID(uuidString: user.id))")
            let dirty = try await admin.reconcile(ReconcileRequest(), options: Self.admin)
            #expect(dirty.differences.map(\.check) == ["total_coins"])
            #expect(dirty.differences.first?.actual == (dirty.differences.first?.expected ?? 0) + 7)
            let stats = try await admin.stats(StatsRequest(), options: Self.admin)
            // 600 XP granted + first_steps (10) + xp_500 (25) = 635 XP: level 4.
            #expect(stats.levels.map(\.level) == [4])
            #expect(stats.mostCommonAchievements.first?.unlocked == 1)
            #expect(stats.mostCommonAchievements.count == 10)
        }
    }

    static func sample() -> Achievement {
        Achievement.with {
            $0.slug = "finisher"
            $0.title = "Finisher"
            $0.category = "challenge"
            $0.rarity = "rare"
            $0.xpReward = 7
            $0.coinsReward = 3
            $0.condition = UnlockCondition.with {
                $0.type = "goals_completed"
                $0.value = 1
            }
        }
    }
}
