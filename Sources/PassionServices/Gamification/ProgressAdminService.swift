import Foundation
import PassionServerAPI
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.ProgressAdmin`: reconciliation of totals with the ledgers, and statistics.
public struct ProgressAdminService: ProgressAdmin.ServiceProtocol {
    let store: GamificationStore

    public init(pool: PostgresPool) {
        self.store = GamificationStore(pool: pool)
    }

    public func reconcile(request: ReconcileRequest, context: ServerContext) async throws -> ReconcileResponse {
        let (differences, users) = try await store.reconcile(deadline: context.deadline)
        return ReconcileResponse.with { response in
            response.usersChecked = users
            response.differences = differences.map { record in
                Difference.with {
                    $0.userID = record.userID.postgresText
                    $0.check = record.check
                    $0.expected = record.expected
                    $0.actual = record.actual
                }
            }
        }
    }

    public func stats(request: StatsRequest, context: ServerContext) async throws -> StatsResponse {
        let (levels, common) = try await store.stats(deadline: context.deadline)
        return StatsResponse.with { response in
            response.levels = levels.map { record in
                LevelBucket.with {
                    $0.level = record.level
                    $0.users = record.users
                    $0.averageXp = record.averageXP
                }
            }
            response.mostCommonAchievements = common.map { record in
                AchievementCount.with {
                    $0.achievementID = record.id.postgresText
                    $0.slug = record.slug ?? ""
                    $0.title = record.title
                    $0.unlocked = record.unlocked
                }
            }
        }
    }
}
