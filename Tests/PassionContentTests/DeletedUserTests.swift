import Foundation
import PassionServerAPI
import PassionClient
import PassionIdentity
import PassionRPCServer
import PassionServices
import PassionStore
import PassionTestSupport
import SwiftProtobuf
import Testing

/// A service acting for a deleted (or never created) user gets one answer from every method that
/// acts on a user's data, USER_NOT_FOUND, and writes nothing: the check is the authenticator's,
/// before any handler, so the table is every such method the server hosts, not a list kept by hand.
@Suite("A deleted user cannot be written to")
struct DeletedUserTests {
    /// Everything a user owns, and the account row, as one string.
    static func state(_ harness: ServiceHarness) async throws -> String {
        let tables = [
            "users", "sessions", "goals", "habits", "habit_completions", "habit_pauses", "quests", "focus_sessions", "user_settings",
            "user_progress", "points_ledger", "coins_ledger", "user_achievements", "idempotency_keys", "progress_events",
        ]
        let parts = tables.map { "(SELECT coalesce(string_agg(md5(row(t.*)::text), ',' ORDER BY md5(row(t.*)::text)), '') FROM \($0) t)" }
        let rows = try await harness.query(SQL(unsafeSQL: "SELECT " + parts.joined(separator: " || '|' || ") + " AS state"))
        return try rows.first?.require("state", as: String.self) ?? ""
    }

    /// Requests that would write if they reached a handler; every other method gets an empty one.
    static func requests(goal: String) -> [String: any SwiftProtobuf.Message] {
        [
            Habits.Method.create.fullName: CreateHabitRequest.with { $0.habit.title = "Written for nobody" },
            Goals.Method.create.fullName: CreateGoalRequest.with { $0.goal.title = "Written for nobody" },
            Goals.Method.update.fullName: UpdateGoalRequest.with {
                $0.goal.id = goal
                $0.goal.title = "Renamed for nobody"
                $0.updateMask.paths = ["title"]
            },
            Settings.Method.update.fullName: UpdateSettingsRequest.with {
                $0.settings.theme = "dark"
                $0.updateMask.paths = ["theme"]
            },
            Users.Method.updateProfile.fullName: UpdateProfileRequest.with {
                $0.displayName = "Ghost"
                $0.updateMask.paths = ["display_name"]
            },
        ]
    }

    @Test("every user method, for a deleted and for an unknown user: NOT_FOUND USER_NOT_FOUND, nothing written")
    func table() async throws {
        try await ServiceHarness.with { harness in
            let victim = try await harness.signIn()
            let goal = try await harness.connection.goals.create(options: .session(victim.token)) { $0.goal.title = "Before" }
            _ = try await harness.connection.habits.create(options: .session(victim.token)) { $0.habit.title = "Before" }
            _ = try await harness.connection.users.deleteAccount(DeleteAccountRequest(), options: .session(victim.token))
            let methods = PassionCatalog.schemas.filter { $0.descriptor.principal == .user }
            #expect(methods.count > 40, "the catalog lists the user methods")
            #expect(methods.contains { $0.descriptor.fullName == Habits.Method.create.fullName })
            let requests = Self.requests(goal: goal.id)
            let before = try await Self.state(harness)
            for user in [victim.id, UUID().uuidString.lowercased()] {
                let options = ServiceHarness.service("everything", asUser: user)
                for schema in methods {
                    let request = requests[schema.descriptor.fullName] ?? schema.requestType.init()
                    let error = await expectRPCError(.notFound) { try await Self.call(harness, schema.descriptor, request, options) }
                    #expect(error?.details?.reason == "USER_NOT_FOUND", "\(schema.descriptor.fullName): \(String(describing: error))")
                }
            }
            #expect(try await Self.state(harness) == before, "a call for a deleted user wrote something")
            // The refusals are audited against the service and the user it named.
            let denied = try await harness.count("""
                SELECT count(*) AS n FROM audit_logs WHERE action = 'auth.denied' AND details->>'reason' = 'USER_NOT_FOUND'
                """)
            #expect(denied == methods.count * 2)
        }
    }

    @Test("a user a service acted for a moment ago is refused at once after deleting the account (the live-user cache)")
    func cachedThenDeleted() async throws {
        try await ServiceHarness.with(configure: { $0.sessionCacheTTL = .seconds(60) }) { harness in
            let victim = try await harness.signIn()
            let service = ServiceHarness.service("everything", asUser: victim.id)
            _ = try await harness.connection.goals.create(options: service) { $0.goal.title = "Cached" }
            _ = try await harness.connection.users.deleteAccount(DeleteAccountRequest(), options: .session(victim.token))
            let before = try await Self.state(harness)
            let error = await expectRPCError(.notFound) {
                try await harness.connection.goals.create(options: service) { $0.goal.title = "After" }
            }
            #expect(error?.details?.reason == "USER_NOT_FOUND")
            // And the database refuses such a write by itself, for an instance that still
            // remembers the user as live.
            let direct = await expectRPCError(.notFound) {
                try await harness.pool.withConnection { connection in
                    do {
                        try await connection.query("INSERT INTO goals (user_id, title) VALUES (\(UUID(uuidString: victim.id)), 'Direct')")
                    } catch let error as StoreError { throw error.rpcError }
                }
            }
            #expect(direct?.details?.reason == "USER_NOT_FOUND")
            #expect(try await Self.state(harness) == before)
        }
    }

    static func call(
        _ harness: ServiceHarness, _ method: MethodDescriptor, _ request: any SwiftProtobuf.Message, _ options: CallOptions
    ) async throws {
        switch method.kind {
        case .unary:
            _ = try await harness.connection.unary(method, request, as: Google_Protobuf_Empty.self, options: options)
        case .serverStreaming:
            let stream = try await harness.connection.serverStreaming(method, request, as: Google_Protobuf_Empty.self, options: options)
            for try await _ in stream {}
        default:
            Issue.record("\(method.fullName): no user method streams requests yet; add it here")
        }
    }
}
