import Foundation
import PassionClient
import PassionIdentity
import PassionStore
import PassionTestSupport
import Testing
import PassionRPCServer

@Suite("Auth: sign-in, sessions, sign-out")
struct AuthTests {
    @Test("SignIn creates the user (email lower-cased) and a 256-bit token of which only the hash is stored")
    func signInCreates() async throws {
        try await ServiceHarness.with { harness in
            let response = try await harness.connection.auth.signIn(options: ServiceHarness.service("gateway")) {
                $0.identity = VerifiedIdentity.with {
                    $0.provider = .azure
                    $0.providerUserID = "azure-42"
                    $0.email = "  Grace.Hopper@Example.COM "
                    $0.displayName = "Grace"
                    $0.timeZone = "America/New_York"
                    $0.pictureURL = "https://example.com/g.png"
                }
            }
            #expect(response.created)
            #expect(response.user.email == "grace.hopper@example.com")
            #expect(response.user.timeZone == "America/New_York")
            #expect(response.user.provider == "azure")
            #expect(response.sessionToken.count == 43)
            #expect(response.sessionToken.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
            // Timestamps carry the database's microseconds, not a Double's noise below them.
            #expect(response.expiresAt.nanos % 1000 == 0 && response.user.createdAt.nanos % 1000 == 0)
            let lifetime = response.expiresAt.date.timeIntervalSinceNow
            #expect(abs(lifetime - 7 * 86_400) < 120)
            // The database holds the SHA-256 of the token, never the token.
            let hash = try #require(SessionToken.hash(response.sessionToken))
            #expect(try await harness.count("SELECT count(*) AS n FROM sessions WHERE id = \(Bytes(hash))") == 1)
            let tokenAnywhere = try await harness.count("""
                SELECT count(*) AS n FROM sessions WHERE encode(id, 'escape') LIKE '%' || \(response.sessionToken) || '%'
                """)
            #expect(tokenAnywhere == 0)
            let audit = try #require(try await harness.auditRows(action: "user.signin").first)
            #expect(try audit.require("status", as: String.self) == "success")
            #expect(try audit.require("principal", as: String.self) == "service:gateway")
            #expect(try audit.require("user_id", as: UUID.self).uuidString.lowercased() == response.user.id)
            // The token works.
            let me = try await harness.connection.users.me(MeRequest(), options: .session(response.sessionToken))
            #expect(me.id == response.user.id)
        }
    }

    @Test("signing in again finds the same user and opens another session; profile fields update")
    func signInAgain() async throws {
        try await ServiceHarness.with { harness in
            let first = try await harness.signIn("same@example.com", subject: "g-same")
            let second = try await harness.connection.auth.signIn(options: ServiceHarness.service("gateway")) {
                $0.identity = VerifiedIdentity.with {
                    $0.provider = .google
                    $0.providerUserID = "g-same"
                    $0.email = "same@example.com"
                    $0.displayName = "New Name"
                }
            }
            #expect(!second.created)
            #expect(second.user.id == first.id)
            #expect(second.user.displayName == "New Name")
            #expect(second.sessionToken != first.token)
            #expect(try await harness.count("SELECT count(*) AS n FROM sessions WHERE user_id = \(UUID(uuidString: first.id))") == 2)
            // Linking: an account created by another provider keeps its identity; the other
            // provider is refused for that email, and nothing changes.
            let before = try await harness.snapshot()
            let error = await expectRPCError(.failedPrecondition) {
                try await harness.connection.auth.signIn(options: ServiceHarness.service("gateway")) {
                    $0.identity = VerifiedIdentity.with {
                        $0.provider = .azure
                        $0.providerUserID = "a-other"
                        $0.email = "same@example.com"
                        $0.emailVerified = true
                    }
                }
            }
            #expect(error?.details?.reason == "EMAIL_LINKED_TO_OTHER_IDENTITY")
            // Which provider the account uses is not told to whoever knows the address.
            #expect(error.map { !$0.message.contains("google") && $0.details?.fields["provider"] == nil } == true)
            #expect(try await harness.snapshot() == before)
        }
    }

    @Test("a deleted account's email signs up again as a new user; the old one can be restored only while the email is free")
    func deletedEmailSignsUpAgain() async throws {
        try await ServiceHarness.with { harness in
            let old = try await harness.signIn("again@example.com", subject: "g-again")
            let deleted = try await harness.connection.users.deleteAccount(DeleteAccountRequest(), options: .session(old.token))
            #expect(deleted.sessionsRevoked == 1)
            await expectRPCError(.unauthenticated) {
                try await harness.connection.users.me(MeRequest(), options: .session(old.token))
            }
            let new = try await harness.signIn("again@example.com", subject: "g-again")
            #expect(new.id != old.id)
            // Restoring the old account would give two active accounts one email.
            let error = await expectRPCError(.alreadyExists) {
                try await harness.connection.users.restoreUser(options: ServiceHarness.service("admin")) { $0.userID = old.id }
            }
            #expect(error?.details?.reason == "EMAIL_IN_USE")
            _ = try await harness.connection.users.deleteAccount(DeleteAccountRequest(), options: .session(new.token))
            let restored = try await harness.connection.users.restoreUser(options: ServiceHarness.service("admin")) { $0.userID = old.id }
            #expect(restored.active)
            #expect(restored.id == old.id)
            #expect(try await harness.auditRows(action: "user.restored").count == 2)  // one failure, one success
        }
    }

    @Test("SignOut revokes only its session; SignOutEverywhere revokes all; ListSessions shows the live ones")
    func signOut() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn("out@example.com", subject: "g-out")
            let second = try await harness.signIn("out@example.com", subject: "g-out")
            let sessions = try await harness.connection.auth.listSessions(ListSessionsRequest(), options: .session(user.token))
            #expect(sessions.sessions.count == 2)
            #expect(sessions.sessions.filter(\.current).count == 1)
            _ = try await harness.connection.auth.signOut(SignOutRequest(), options: .session(user.token))
            let error = await expectRPCError(.unauthenticated) {
                try await harness.connection.users.me(MeRequest(), options: .session(user.token))
            }
            #expect(error?.details?.reason == "TOKEN_REVOKED")
            #expect(try await harness.connection.users.me(MeRequest(), options: .session(second.token)).id == user.id)
            let third = try await harness.signIn("out@example.com", subject: "g-out")
            let everywhere = try await harness.connection.auth.signOutEverywhere(SignOutEverywhereRequest(), options: .session(third.token))
            #expect(everywhere.sessionsRevoked == 2)
            for token in [second.token, third.token] {
                await expectRPCError(.unauthenticated) { try await harness.connection.users.me(MeRequest(), options: .session(token)) }
            }
        }
    }

    @Test("expired sessions answer SESSION_EXPIRED for 30 days; the purge (admin call and daily job) then deletes them, once")
    func expiry() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let old = try await harness.signIn()
            for (token, expiredDaysAgo) in [(user.token, 1), (old.token, 31)] {
                let hash = try #require(SessionToken.hash(token))
                _ = try await harness.query("""
                    UPDATE sessions SET created_at = now() - interval '40 days', last_activity = now() - interval '40 days',
                                        expires_at = now() - \(expiredDaysAgo)::integer * interval '1 day' WHERE id = \(Bytes(hash))
                    """)
                let error = await expectRPCError(.unauthenticated) {
                    try await harness.connection.users.me(MeRequest(), options: .session(token))
                }
                #expect(error?.details?.reason == "SESSION_EXPIRED")
            }
            let live = try await harness.signIn()
            await expectRPCError(.permissionDenied) {
                try await harness.connection.auth.purgeExpiredSessions(PurgeExpiredSessionsRequest(), options: .session(live.token))
            }
            let purged = try await harness.connection.auth.purgeExpiredSessions(
                PurgeExpiredSessionsRequest(), options: ServiceHarness.service("admin"))
            #expect(purged.deleted == 1)
            #expect(try await harness.count("SELECT count(*) AS n FROM sessions") == 2)
            // The recently expired one still says so; the purged one is unknown now.
            let recent = await expectRPCError(.unauthenticated) { try await harness.connection.users.me(MeRequest(), options: .session(user.token)) }
            #expect(recent?.details?.reason == "SESSION_EXPIRED")
            let gone = await expectRPCError(.unauthenticated) { try await harness.connection.users.me(MeRequest(), options: .session(old.token)) }
            #expect(gone?.details?.reason == "TOKEN_UNKNOWN")
            // The daily job: runs when due, then not again within the day, whichever instance asks.
            let maintenance = SessionMaintenance(pool: harness.pool)
            // The admin purge counted as the day's run.
            #expect(try await maintenance.runIfDue() == nil)
            _ = try await harness.query("DELETE FROM maintenance_runs")
            #expect(try await maintenance.runIfDue() == 0)
            #expect(try await maintenance.runIfDue() == nil)
            #expect(try await harness.count("SELECT count(*) AS n FROM maintenance_runs WHERE job = 'expired_sessions'") == 1)
            // Progress events past the resume window go; recent ones stay.
            _ = try await harness.connection.progress.awardXP(options: ServiceHarness.service("progress")) {
                $0.userID = live.id
                $0.points = 5
                $0.reason = "grant"
                $0.idempotencyKey = "trim"
            }
            _ = try await harness.query("UPDATE progress_events SET created_at = now() - interval '2 days' WHERE id = (SELECT min(id) FROM progress_events)")
            let kept = try await harness.count("SELECT count(*) AS n FROM progress_events") - 1
            // Its day is dropped whole, or (in the first hour of a UTC day, when that day still
            // straddles the window's edge) the row is deleted.
            let trim = try await maintenance.trimEvents()
            #expect(trim.rowsDeleted == 1 || (trim.rowsDeleted == 0 && trim.partitionsDropped >= 1), "\(trim)")
            #expect(try await harness.count("SELECT count(*) AS n FROM progress_events") == kept)
            #expect(try await maintenance.trimEvents() == EventTrim(partitionsDropped: 0, rowsDeleted: 0))
        }
    }

    @Test("last_activity moves at most once a minute")
    func lastActivity() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let hash = try #require(SessionToken.hash(user.token))
            func lastActivity() async throws -> Date {
                try await harness.query("SELECT last_activity FROM sessions WHERE id = \(Bytes(hash))").first?.require("last_activity", as: Date.self) ?? .distantPast
            }
            let created = try await lastActivity()
            _ = try await harness.connection.users.me(MeRequest(), options: .session(user.token))
            #expect(try await lastActivity() == created, "moved within the first minute")
            _ = try await harness.query("""
                UPDATE sessions SET created_at = now() - interval '5 minutes', last_activity = now() - interval '2 minutes'
                WHERE id = \(Bytes(hash))
                """)
            let stale = try await lastActivity()
            _ = try await harness.connection.users.me(MeRequest(), options: .session(user.token))
            let touched = try await lastActivity()
            #expect(touched.timeIntervalSince(stale) > 100)
            _ = try await harness.connection.users.me(MeRequest(), options: .session(user.token))
            #expect(try await lastActivity() == touched)
        }
    }

    @Test("the development service key is created once with mode 0600 and holds admin")
    func developmentKey() throws {
        let directory = NSTemporaryDirectory() + "passion-devkey-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try DevelopmentServiceKey.ensure(dataDirectory: directory)
        let attributes = try FileManager.default.attributesOfItem(atPath: DevelopmentServiceKey.path(dataDirectory: directory))
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let key = try String(contentsOfFile: DevelopmentServiceKey.path(dataDirectory: directory), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(key.hasPrefix("psk_") && key.count == 47)
        #expect(first.keySHA256 == ServiceAccount.keyHash(key))
        #expect(first.scopes == ["admin"])
        let second = try DevelopmentServiceKey.ensure(dataDirectory: directory)
        #expect(second == first)
    }
}
