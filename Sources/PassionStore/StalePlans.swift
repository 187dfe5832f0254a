import CLibPQ
import Synchronization

/// Counts the stale plans a pool's connections have met: PostgreSQL refuses to run a prepared
/// statement whose result columns a schema change altered (0A000, "cached plan must not change
/// result type"; `SELECT h.*` after a migration adds a column). A change that stales one
/// connection's statement stales every connection's, so the first to meet it tells the others,
/// and each drops its prepared statements before it names its next one.
final class PlanEpoch: Sendable {
    private let value = Atomic<Int>(0)

    var current: Int { value.load(ordering: .relaxed) }

    func advance() {
        value.add(1, ordering: .relaxed)
    }
}

extension PostgresConnection {
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
