import Foundation
import PassionRPC
import PassionStore
import PassionTestSupport
import Testing

/// The words Swift names once (`Vocabulary`, `StoreError.schemaErrorCodes`) against what the
/// migrated database enforces: a migration that changes a CHECK or a raised error fails here.
@Suite("Vocabulary against the schema")
struct VocabularyTests {
    /// The quoted words of a CHECK (... IN (...)) constraint, as PostgreSQL prints it back.
    static func words(_ constraint: String, _ connection: PostgresConnection) async throws -> Set<String> {
        let definition = try #require(try await connection.query("""
            SELECT pg_get_constraintdef(oid) AS definition FROM pg_constraint WHERE conname = \(constraint)
            """).first).require("definition", as: String.self)
        return Set(definition.matches(of: /'([a-z_]+)'::text/).map { String($0.1) })
    }

    @Test("reasons, resource types and event types are the ones the CHECK constraints allow")
    func checks() async throws {
        let pool = try await TestDatabase.migratedPool(size: 1)
        defer { Task { await pool.shutdown() } }
        try await pool.withConnection { connection in
            let xp = try await Self.words("points_ledger_reason_valid", connection)
            let coins = try await Self.words("coins_ledger_reason_valid", connection)
            let resources = try await Self.words("points_ledger_resource_type_valid", connection)
            let events = try await Self.words("progress_events_type_valid", connection)
            #expect(xp == Vocabulary.xpReasons.union(Vocabulary.functionXPReasons))
            #expect(coins == Vocabulary.coinReasons.union(Vocabulary.functionCoinReasons))
            #expect(resources == Vocabulary.rewardResourceTypes.union(["achievement"]))
            #expect(events == Vocabulary.eventTypes)
            #expect(Vocabulary.xpReasons.isDisjoint(with: Vocabulary.functionXPReasons))
        }
    }

    @Test("every client error a function raises with a reason has its status in StoreError's table, and nothing else is there")
    func errorCodes() async throws {
        let pool = try await TestDatabase.migratedPool(size: 1)
        defer { Task { await pool.shutdown() } }
        let sources = try await pool.withConnection { connection in
            try await connection.query("""
                SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
                """).map { try $0.require("prosrc", as: String.self) }
        }
        // P0A1x are client errors with their reason as HINT; P0A0x guard the schema's
        // invariants (a server bug, answered INTERNAL), their HINT is advice for the operator.
        var clientErrors: Set<String> = []
        var guards: Set<String> = []
        for source in sources {
            // The USING clause runs to the statement's end.
            for match in source.matches(of: /ERRCODE\s*=\s*'(P0A[0-9A-Z]{2})'([^;]*)/) where match.2.contains("HINT") {
                if match.1.hasPrefix("P0A1") { clientErrors.insert(String(match.1)) } else { guards.insert(String(match.1)) }
            }
        }
        #expect(!clientErrors.isEmpty && guards == ["P0A01", "P0A02"])
        #expect(clientErrors == Set(StoreError.schemaErrorCodes.keys))
        for code in guards {
            #expect(StoreError(sqlState: code, serverMessage: "").rpcError.code == .internal)
        }
    }
}
