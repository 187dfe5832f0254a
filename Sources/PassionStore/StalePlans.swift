import CLibPQ
import CoreMetrics
import Synchronization

/// Counts the stale plans a pool's connections have met: PostgreSQL refuses to run a prepared
/// statement whose result columns a schema change altered (0A000, "cached plan must not change
/// result type"; `SELECT h.*` after a migration adds a column). A change that stales one
/// connection's statement stales every connection's, so the first to meet it tells the others,
/// and each drops its prepared statements before it names its next one.
final class PlanEpoch: Sendable {
    private let value = Atomic<Int>(0)
    /// Counts the changes met (`passion_db_stale_plans_total`), when the pool records metrics.
    private let moved: Counter?

    init(moved: Counter? = nil) {
        self.moved = moved
    }

    var current: Int { value.load(ordering: .relaxed) }

    /// Moves on from `epoch`, the one the stale statement was named in; a no-op when another
    /// connection already has. Statements in flight when the schema changed each meet it, and
    /// one change must drop every connection's statements once, not once per statement.
    func advance(from epoch: Int) {
        if value.compareExchange(expected: epoch, desired: epoch + 1, ordering: .relaxed).exchanged { moved?.increment() }
    }
}

extension PostgresConnection {
    /// Whether `result` is PostgreSQL refusing a prepared statement whose result columns a schema
    /// change altered: SQLSTATE 0A000 raised by `RevalidateCachedQuery` (plancache.c). 0A000
    /// alone is any feature_not_supported, a planner's refusal included, which running again
    /// would not cure; the routine's name, unlike the message, does not follow `lc_messages`.
    static func isStalePlan(_ result: OpaquePointer) -> Bool {
        guard let state = PQresultErrorField(result, passion_pg_diag_sqlstate()), String(cString: state) == "0A000",
            let routine = PQresultErrorField(result, passion_pg_diag_source_function())
        else { return false }
        return String(cString: routine) == "RevalidateCachedQuery"
    }

    /// Runs `attempt` (one send of a statement and its answer) again, once, after a stale plan in
    /// autocommit: the statement had no effect, and the second try prepares it anew. Inside a
    /// transaction the failure aborted the transaction, so the error goes up marked retryable,
    /// for `PostgresPool.transaction` to run the whole body again.
    func retryingStalePlan<Value>(_ attempt: () async throws -> Value) async throws -> Value {
        do {
            return try await attempt()
        } catch let error as StoreError where error.stalePlan && PQtransactionStatus(libpq) == PQTRANS_IDLE {
            return try await attempt()
        }
    }
}
