/// One inconsistency found by the integrity check.
public struct IntegrityProblem: Sendable, Equatable, CustomStringConvertible {
    /// For example `progress_xp_mismatch` or `orphan_user_ref` (see docs/schema.md).
    public var check: String
    public var detail: String

    public var description: String { "\(check): \(detail)" }
}

/// The seed's testing queries (orphans, sessions of deleted users) and ledger-vs-progress
/// reconciliation, as the database function `passion_integrity_check()`; no problems means healthy.
public enum IntegrityCheck {
    public static func run(_ pool: PostgresPool) async throws -> [IntegrityProblem] {
        try await pool.withConnection { connection in
            try await connection.query("SELECT check_name, detail FROM passion_integrity_check()").map { row in
                IntegrityProblem(check: try row.require("check_name"), detail: try row.decode("detail") ?? "")
            }
        }
    }
}
