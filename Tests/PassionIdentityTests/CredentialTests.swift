import Foundation
import PassionClient
import PassionIdentity
import PassionStore
import PassionTestSupport
import Testing
import PassionRPCServer

@Suite("Credentials: every bad one is refused, audited, and changes nothing")
struct CredentialTests {
    /// Calls Users/Me with `metadata` and expects `code` with `reason`.
    private func refused(
        _ harness: ServiceHarness, _ metadata: Metadata, _ code: StatusCode, reason: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let before = try await harness.snapshot()
        let error = await expectRPCError(code, sourceLocation: sourceLocation) {
            try await harness.connection.users.me(MeRequest(), options: CallOptions(metadata: metadata))
        }
        #expect(error?.details?.reason == reason, "got \(String(describing: error))", sourceLocation: sourceLocation)
        #expect(try await harness.snapshot() == before, sourceLocation: sourceLocation)
    }

    @Test("missing, malformed, unknown, expired and revoked tokens: UNAUTHENTICATED with a reason")
    func badTokens() async throws {
        try await ServiceHarness.with { harness in
            try await refused(harness, [:], .unauthenticated, reason: "CREDENTIAL_REQUIRED")
            try await refused(harness, ["authorization": "Bearer"], .unauthenticated, reason: "AUTHORIZATION_MALFORMED")
            try await refused(harness, ["authorization": "Basic dXNlcjpwYXNz"], .unauthenticated, reason: "AUTHORIZATION_MALFORMED")
            try await refused(harness, ["authorization": "Bearer not-a-token"], .unauthenticated, reason: "TOKEN_MALFORMED")
            try await refused(harness, ["authorization": "Bearer ' OR 1=1 --"], .unauthenticated, reason: "TOKEN_MALFORMED")
            let unknown = SessionToken.generate().token
            try await refused(harness, ["authorization": "Bearer \(unknown)"], .unauthenticated, reason: "TOKEN_UNKNOWN")
            let user = try await harness.signIn()
            let expiring = try await harness.signIn(user.email, subject: "sub-\(user.email)")
            let hash = try #require(SessionToken.hash(expiring.token))
            _ = try await harness.query("""
                UPDATE sessions SET created_at = now() - interval '8 days', last_activity = now() - interval '8 days',
                                    expires_at = now() - interval '1 second' WHERE id = \(Bytes(hash))
                """)
            try await refused(harness, ["authorization": "Bearer \(expiring.token)"], .unauthenticated, reason: "SESSION_EXPIRED")
            _ = try await harness.connection.auth.signOut(SignOutRequest(), options: .session(user.token))
            try await refused(harness, ["authorization": "Bearer \(user.token)"], .unauthenticated, reason: "TOKEN_REVOKED")
            try await refused(harness, ["authorization": "ServiceKey wrong"], .unauthenticated, reason: "SERVICE_KEY_UNKNOWN")
            // Each refusal left a failure row naming the method and the reason.
            let failures = try await harness.auditRows(action: "auth.failed")
            #expect(failures.count == 9)
            #expect(try failures.allSatisfy { try $0.require("status", as: String.self) == "failure" })
            let reasons = Set(try failures.map { try $0.require("details", as: JSONB.self).json })
            #expect(reasons.contains { $0.contains("TOKEN_REVOKED") && $0.contains("passion.v1.Users/Me") })
        }
    }

    @Test("wrong principal or scope: PERMISSION_DENIED naming what is missing, audited as auth.denied")
    func wrongScope() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            // A user calling a service method and an admin method.
            var error = await expectRPCError(.permissionDenied) {
                try await harness.connection.users.getUser(options: .session(user.token)) { $0.userID = user.id }
            }
            #expect(error?.details?.reason == "PRINCIPAL_NOT_ALLOWED")
            await expectRPCError(.permissionDenied) {
                try await harness.connection.audit.query(QueryAuditLogRequest(), options: .session(user.token))
            }
            // A service without the scope.
            error = await expectRPCError(.permissionDenied) {
                try await harness.connection.users.getUser(options: ServiceHarness.service("progress")) { $0.userID = user.id }
            }
            #expect(error?.details?.reason == "SCOPE_REQUIRED")
            #expect(error?.details?.fields["scope"] == "users:read")
            error = await expectRPCError(.permissionDenied) {
                try await harness.connection.users.restoreUser(options: ServiceHarness.service("reader")) { $0.userID = user.id }
            }
            #expect(error?.details?.fields["scope"] == "admin")
            // A service on a user method without naming the user, and a user naming another.
            error = await expectRPCError(.permissionDenied) {
                try await harness.connection.users.me(MeRequest(), options: ServiceHarness.service("reader"))
            }
            #expect(error?.details?.reason == "AS_USER_REQUIRED")
            var options = CallOptions.session(user.token)
            options.metadata.add("as-user", UUID().uuidString)
            error = await expectRPCError(.permissionDenied) { try await harness.connection.users.me(MeRequest(), options: options) }
            #expect(error?.details?.reason == "AS_USER_NOT_ALLOWED")
            error = await expectRPCError(.invalidArgument) {
                try await harness.connection.users.me(MeRequest(), options: ServiceHarness.service("reader", asUser: "bob"))
            }
            #expect(error?.details?.fields["field"] == "as-user")
            let denied = try await harness.auditRows(action: "auth.denied")
            #expect(denied.count == 7)
            // The user-caused denials are on the user's own trail.
            #expect(try denied.contains { try $0.decode("user_id", as: UUID.self)?.uuidString.lowercased() == user.id })
        }
    }

    @Test("a remembered service key passes in every spelling of its header, again and again; near misses are refused")
    func rememberedServiceKeys() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let header = try #require(ServiceHarness.service("reader").metadata["authorization"])
            let key = header.dropFirst("ServiceKey ".count)
            let spellings = [header, header, "servicekey  \(key) ", "SERVICEKEY \(key)", header]
            for spelling in spellings {
                let fetched = try await harness.connection.users.getUser(
                    GetUserRequest.with { $0.userID = user.id }, options: CallOptions(metadata: ["authorization": spelling]))
                #expect(fetched.id == user.id, "\(spelling)")
            }
            for nearMiss in ["\(header)x", String(header.dropLast()), "\(header) \(key)", "Bearer \(key)"] {
                let error = await expectRPCError(.unauthenticated) {
                    try await harness.connection.users.getUser(
                        GetUserRequest.with { $0.userID = user.id }, options: CallOptions(metadata: ["authorization": nearMiss]))
                }
                #expect(["SERVICE_KEY_UNKNOWN", "TOKEN_MALFORMED"].contains(error?.details?.reason), "\(nearMiss)")
            }
        }
    }

    @Test("a service acting for a user is audited as both")
    func actingForUser() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let updated = try await harness.connection.users.updateProfile(options: ServiceHarness.service("everything", asUser: user.id)) {
                $0.displayName = "Changed by a service"
                $0.updateMask.paths = ["display_name"]
            }
            #expect(updated.displayName == "Changed by a service")
            let row = try #require(try await harness.auditRows(action: "user.updated").first)
            #expect(try row.require("principal", as: String.self) == "service:everything>user:\(user.id)")
            #expect(try row.require("user_id", as: UUID.self).uuidString.lowercased() == user.id)
            // The id in capitals is the same user, audited under its canonical (lower-case) text.
            _ = try await harness.connection.users.updateProfile(options: ServiceHarness.service("everything", asUser: user.id.uppercased())) {
                $0.displayName = "Changed again"
                $0.updateMask.paths = ["display_name"]
            }
            let principals = try await harness.auditRows(action: "user.updated").map { try $0.require("principal", as: String.self) }
            #expect(principals == Array(repeating: "service:everything>user:\(user.id)", count: 2))
            // A user id that does not exist: NOT_FOUND, as for any missing resource.
            await expectRPCError(.notFound) {
                try await harness.connection.users.me(MeRequest(), options: ServiceHarness.service("everything", asUser: UUID().uuidString))
            }
        }
    }

    @Test("a verified client certificate listed as a service authenticates it (mTLS)")
    func mutualTLS() async throws {
        try await ServiceHarness.with(mutualTLS: true) { harness in
            // The gateway's key wins over the certificate when both are presented.
            let user = try await harness.signIn()
            let client = harness.connection
            // "certified" (CN test-client) holds users:read: GetUser works, RestoreUser does not.
            let fetched = try await client.users.getUser(GetUserRequest.with { $0.userID = user.id })
            #expect(fetched.id == user.id)
            await expectRPCError(.permissionDenied) { try await client.users.restoreUser(RestoreUserRequest.with { $0.userID = user.id }) }
        }
    }
}
