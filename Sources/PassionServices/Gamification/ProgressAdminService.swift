import Foundation
import PassionServerAPI
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.ProgressAdmin`: reconciliation of totals with the ledgers, and statistics.
public struct ProgressAdminService: ProgressAdmin.ServiceProtocol {
    let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    public func reconcile(request: ReconcileRequest, context: ServerContext) async throws -> ReconcileResponse {
        let (differences, users) = try await pool.withConnection(deadline: context.deadline) { connection in
            (try await connection.query("SELECT * FROM passion_reconcile() ORDER BY user_id, check_name"),
             try await connection.query("SELECT count(*) AS n FROM user_progress").first?.require("n", as: Int64.self) ?? 0)
        }
        return try ReconcileResponse.with { response in
            response.usersChecked = users
            response.differences = try differences.map { row in
                try Difference.with {
                    $0.userID = try row.require("user_id", as: UUID.self).postgresText
                    $0.check = try row.require("check_name", as: String.self)
                    $0.expected = try row.require("expected", as: Int64.self)
                    $0.actual = try row.require("actual", as: Int64.self)
                }
            }
        }
    }

    public func stats(request: StatsRequest, context: ServerContext) async throws -> StatsResponse {
        let (levels, common) = try await pool.withConnection(deadline: context.deadline) { connection in
            (try await connection.query("""
                SELECT current_level, count(*) AS users, round(avg(total_xp))::bigint AS average_xp
                FROM user_progress GROUP BY current_level ORDER BY current_level
                """),
             try await connection.query("""
                SELECT a.id, a.slug, a.title, count(ua.id) AS unlocked
                FROM achievements a LEFT JOIN user_achievements ua ON ua.achievement_id = a.id
                GROUP BY a.id ORDER BY unlocked DESC, a.id LIMIT 10
                """))
        }
        return try StatsResponse.with { response in
            response.levels = try levels.map { row in
                try LevelBucket.with {
                    $0.level = try row.require("current_level", as: Int32.self)
                    $0.users = try row.require("users", as: Int64.self)
                    $0.averageXp = try row.require("average_xp", as: Int64.self)
                }
            }
            response.mostCommonAchievements = try common.map { row in
                try AchievementCount.with {
                    $0.achievementID = try row.require("id", as: UUID.self).postgresText
                    $0.slug = try row.decode("slug", as: String.self) ?? ""
                    $0.title = try row.require("title", as: String.self)
                    $0.unlocked = try row.require("unlocked", as: Int64.self)
                }
            }
        }
    }
}
