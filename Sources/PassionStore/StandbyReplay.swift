import Foundation

/// Whether a hot standby has caught up with its primary: what a read that may lag, but must
/// not miss anything written before it began, waits for.
public enum StandbyReplay {
    /// Returns true once `standby` has replayed everything `primary` had written when called;
    /// false when `patience` runs out first. A standby that cannot be reached, or lacks the
    /// database yet, counts as not caught up; a plain server (not in recovery) holds everything.
    /// PostgreSQL 15 has no blocking wait for a replay position, so this asks every 20 ms.
    public static func waitUntilReplayed(primary: PostgresPool, standby: PostgresPool, patience: Duration) async throws -> Bool {
        let written = try await primary.withConnection { connection in
            try await connection.query("SELECT pg_current_wal_lsn()::text AS lsn").first?.require("lsn", as: String.self)
        }
        let giveUp = ContinuousClock.now + patience
        repeat {
            let replayed = try? await standby.withConnection { connection in
                try await connection.query(
                    "SELECT coalesce(pg_last_wal_replay_lsn() >= \(written)::pg_lsn, true) AS replayed"
                ).first?.require("replayed", as: Bool.self)
            }
            if replayed == true { return true }
            try await Task.sleep(for: .milliseconds(20))
        } while ContinuousClock.now < giveUp
        return false
    }
}
