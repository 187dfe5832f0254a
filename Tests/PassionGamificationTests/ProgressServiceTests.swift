import Foundation
import PassionServerAPI
import PassionClient
import PassionRPCServer
import PassionServices
import PassionStore
import PassionTestSupport
import Testing

/// Progress through the whole stack: client, TLS, server, authenticator, pool, PostgreSQL.
@Suite("Progress service")
struct ProgressServiceTests {
    static let writer = ServiceHarness.service("progress")

    @Test("AwardXP returns the new totals and the events it caused; GetProgress and the ledger agree")
    func award() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let progress = harness.connection.progress
            let result = try await progress.awardXP(options: Self.writer) {
                $0.userID = user.id
                $0.points = 320
                $0.reason = "habit_completed"
                $0.resourceType = "habit"
                $0.resourceID = UUID().uuidString
                $0.idempotencyKey = "habit-completion-1"
            }
            #expect(!result.replayed)
            #expect(result.events.first?.type == .xpAwarded)
            #expect(result.events.first?.amount == 320)
            // 320 XP crosses level 2 (100) and 3 (300): one LEVEL_UP from 1 to 3, and first_steps unlocks.
            let levelUps = result.events.filter { $0.type == .levelUp }
            #expect(levelUps.first?.fromLevel == 1 && levelUps.first?.toLevel == 3)
            #expect(result.events.contains { $0.type == .achievementUnlocked && $0.achievement.slug == "first_steps" })
            #expect(result.progress.totalXp == 330)
            #expect(result.progress.level == 3)
            #expect(result.progress.xpIntoLevel == 30 && result.progress.xpToNextLevel == 270)

            let mine = try await progress.getProgress(GetProgressRequest(), options: .session(user.token))
            #expect(mine.totalXp == 330 && mine.totalCoins == 5 && mine.level == 3 && mine.achievementsUnlocked == 1)
            #expect(mine.allTimeRank == 1)
            let ledger = try await progress.listPointsLedger(ListLedgerRequest(), options: .session(user.token))
            #expect(ledger.entries.map(\.points) == [10, 320])
            #expect(ledger.entries.last?.idempotencyKey == "habit-completion-1")

            // The retry after a lost reply: the first result, nothing written.
            let retry = try await progress.awardXP(options: Self.writer) {
                $0.userID = user.id
                $0.points = 320
                $0.reason = "habit_completed"
                $0.resourceType = ledger.entries.last?.resourceType ?? ""
                $0.resourceID = ledger.entries.last?.resourceID ?? ""
                $0.idempotencyKey = "habit-completion-1"
            }
            #expect(retry.replayed && retry.ledgerID == result.ledgerID && retry.progress == result.progress)
            #expect(try await harness.count("SELECT count(*) AS n FROM points_ledger") == 2)
            // The audit trail has the award with the acting service.
            let audit = try #require(try await harness.auditRows(action: "xp.awarded").first)
            #expect(try audit.require("principal", as: String.self) == "service:progress")
        }
    }

    @Test("coins: earn, spend over the balance (INSUFFICIENT_FUNDS with the balance), spend, refund all, refund twice")
    func coins() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let progress = harness.connection.progress
            _ = try await progress.awardCoins(options: Self.writer) {
                $0.userID = user.id
                $0.coins = 60
                $0.reason = "battle_win"
                $0.idempotencyKey = "battle-1"
            }
            let before = try await harness.count("SELECT count(*) AS n FROM coins_ledger")
            let error = await expectRPCError(.failedPrecondition) {
                try await progress.spendCoins(options: Self.writer) {
                    $0.userID = user.id
                    $0.price = 61
                    $0.idempotencyKey = "buy-1"
                }
            }
            #expect(error?.details?.reason == "INSUFFICIENT_FUNDS")
            #expect(error?.details?.fields["balance"] == "60")
            #expect(try await harness.count("SELECT count(*) AS n FROM coins_ledger") == before)
            let spend = try await progress.spendCoins(options: Self.writer) {
                $0.userID = user.id
                $0.price = 45
                $0.idempotencyKey = "buy-2"
            }
            #expect(spend.progress.totalCoins == 15)
            #expect(spend.events.first?.type == .coinsSpent)
            let refund = try await progress.refundCoins(options: Self.writer) {
                $0.userID = user.id
                $0.refundOf = spend.ledgerID
                $0.idempotencyKey = "refund-2"
            }
            #expect(refund.progress.totalCoins == 60)
            let twice = await expectRPCError(.alreadyExists) {
                try await progress.refundCoins(options: Self.writer) {
                    $0.userID = user.id
                    $0.refundOf = spend.ledgerID
                    $0.idempotencyKey = "refund-2-again"
                }
            }
            #expect(twice?.details?.reason == "ALREADY_REFUNDED")
            let coins = try await progress.listCoinsLedger(ListLedgerRequest(), options: .session(user.token))
            #expect(coins.entries.map(\.transactionType) == ["refund", "spent", "earned"])
            #expect(coins.entries.first?.refundOf == spend.ledgerID)
            // Failed attempts are on the trail.
            let spent = try await harness.auditRows(action: "coins.spent")
            #expect(try spent.map { try $0.require("status", as: String.self) }.sorted() == ["failure", "success"])
        }
    }

    @Test("bad input: each field named, nothing written")
    func badInput() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let progress = harness.connection.progress
            func rejects(_ field: String, _ change: @escaping @Sendable (inout AwardXPRequest) -> Void) async throws {
                let before = try await harness.count("SELECT count(*) AS n FROM points_ledger")
                let error = await expectRPCError(.invalidArgument) {
                    try await progress.awardXP(options: Self.writer) { request in
                        request.userID = user.id
                        request.points = 10
                        request.reason = "grant"
                        request.idempotencyKey = "k-\(UUID())"
                        change(&request)
                    }
                }
                #expect(error?.details?.fields["field"] == field, "\(String(describing: error))")
                #expect(try await harness.count("SELECT count(*) AS n FROM points_ledger") == before)
            }
            try await rejects("user_id") { $0.userID = "nobody" }
            try await rejects("reason") { $0.reason = "found_a_bug" }
            try await rejects("points") { $0.points = 0 }
            try await rejects("points") { $0.points = -5 }
            try await rejects("points") {
                $0.reason = "penalty"
                $0.points = 5
            }
            try await rejects("idempotency_key") { $0.idempotencyKey = "" }
            try await rejects("idempotency_key") { $0.idempotencyKey = "has space" }
            try await rejects("idempotency_key") { $0.idempotencyKey = String(repeating: "k", count: 201) }
            try await rejects("resource_type") {
                $0.resourceType = "planet"
                $0.resourceID = UUID().uuidString
            }
            try await rejects("resource_id") {
                $0.resourceType = "habit"
                $0.resourceID = "7"
            }
            // An unknown user: NOT_FOUND.
            await expectRPCError(.notFound) {
                try await progress.awardXP(options: Self.writer) {
                    $0.userID = UUID().uuidString
                    $0.points = 10
                    $0.reason = "grant"
                    $0.idempotencyKey = "ghost"
                }
            }
            // The same key for a different request: INVALID_ARGUMENT, the first stays.
            _ = try await progress.awardXP(options: Self.writer) {
                $0.userID = user.id
                $0.points = 10
                $0.reason = "grant"
                $0.idempotencyKey = "once"
            }
            try await rejects("idempotency_key") {
                $0.points = 11
                $0.idempotencyKey = "once"
            }
        }
    }
}
