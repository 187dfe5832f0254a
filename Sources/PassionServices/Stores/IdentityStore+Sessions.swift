import Foundation
import PassionIdentity
import PassionStore

extension IdentityStore {
    /// A sign-in identity after validation: what gets stored.
    struct SignInIdentity: Sendable {
        var provider: String
        var subject: String
        var email: String
        /// The provider vouched for `email`: only then may it link to an account or claim the address.
        var emailVerified: Bool
        var displayName: String?
        var pictureURL: String?
        var timeZone: String?
    }

    /// Finds or creates the user of `identity` and opens a session for them (id `sessionHash`,
    /// lasting `lifetimeSeconds`), with its audit row, in one transaction. Throws
    /// `Refusal.emailLinkedToOtherIdentity` and `Refusal.userNotInserted`; a unique violation
    /// (two first sign-ins racing) is the caller's to retry.
    func signIn(
        _ identity: SignInIdentity, sessionHash hash: [UInt8], lifetimeSeconds: Int64, origin: AuditOrigin,
        deadline: ContinuousClock.Instant?
    ) async throws -> (user: UserRecord, created: Bool, expiresAt: Date?) {
        try await pool.transaction(deadline: deadline) { connection in
            let (user, created) = try await Self.upsertUser(identity, connection: connection)
            let session = try await connection.query("""
                INSERT INTO sessions (id, user_id, expires_at)
                VALUES (\(Bytes(hash)), \(user.id), now() + \(lifetimeSeconds) * interval '1 second')
                RETURNING expires_at
                """)
            try await connection.insertAudit(origin.record(
                "user.signin", resourceType: "user", resourceID: user.id.postgresText, userID: user.id,
                details: ["provider": identity.provider, "created": created ? "true" : "false"]))
            let expiresAt = try session.first?.optional("expires_at", as: Date.self)
            return (user, created, expiresAt)
        }
    }

    /// Finds the user by provider identity; else, when the provider vouched for the email,
    /// links the identity to the account holding that verified address if it has no identity
    /// yet; else creates an account. An unverified email never links and never claims an
    /// address (README, Identity: "How accounts are matched").
    private static func upsertUser(_ identity: SignInIdentity, connection: PostgresConnection) async throws -> (UserRecord, Bool) {
        // A known identity. Its email follows the provider's only as far as that is safe: a
        // vouched address is taken unless another account holds it verified, and an unvouched
        // one never replaces a verified address.
        if let row = try await connection.query("""
            UPDATE users SET
                email = CASE WHEN claim.free OR NOT users.email_verified THEN \(identity.email) ELSE users.email END,
                email_verified = claim.free OR users.email_verified,
                display_name = COALESCE(\(identity.displayName), display_name),
                profile_picture_url = COALESCE(\(identity.pictureURL), profile_picture_url),
                timezone = COALESCE(\(identity.timeZone), timezone), updated_at = now()
            FROM (SELECT \(identity.emailVerified) AND NOT EXISTS (
                      SELECT 1 FROM users holder
                      WHERE holder.email = \(identity.email) AND holder.email_verified AND holder.deleted_at IS NULL
                        AND (holder.oauth_provider, holder.oauth_id) IS DISTINCT FROM (\(identity.provider), \(identity.subject))
                  )) AS claim (free)
            WHERE oauth_provider = \(identity.provider) AND oauth_id = \(identity.subject) AND deleted_at IS NULL
            RETURNING \(unsafeSQL: UserRecord.columns)
            """).first {
            return (try UserRecord(fields: row), false)
        }
        if identity.emailVerified, let row = try await connection.query("""
            SELECT id, oauth_provider, oauth_id FROM users
            WHERE email = \(identity.email) AND email_verified AND deleted_at IS NULL FOR UPDATE
            """).first {
            let holder = try EmailHolderRecord(fields: row)
            if let provider = holder.provider {
                // A concurrent first sign-in of this same identity linked it while we waited:
                // the next attempt finds it by identity.
                if provider == identity.provider, holder.subject == identity.subject {
                    throw StoreError(sqlState: "40001", serverMessage: "identity linked concurrently")
                }
                throw Refusal.emailLinkedToOtherIdentity
            }
            let linkedRow = try await connection.query("""
                UPDATE users SET oauth_provider = \(identity.provider), oauth_id = \(identity.subject),
                       display_name = COALESCE(\(identity.displayName), display_name),
                       profile_picture_url = COALESCE(\(identity.pictureURL), profile_picture_url),
                       timezone = COALESCE(\(identity.timeZone), timezone), updated_at = now()
                WHERE id = \(holder.id)
                RETURNING \(unsafeSQL: UserRecord.columns)
                """).first
            guard let linkedRow else { throw StoreError(sqlState: "40001", serverMessage: "user vanished while linking") }
            return (try UserRecord(fields: linkedRow), false)
        }
        let inserted = try await connection.query("""
            INSERT INTO users (email, email_verified, display_name, oauth_provider, oauth_id, profile_picture_url, timezone)
            VALUES (\(identity.email), \(identity.emailVerified), \(identity.displayName), \(identity.provider), \(identity.subject),
                    \(identity.pictureURL), \(identity.timeZone))
            RETURNING \(unsafeSQL: UserRecord.columns)
            """).first
        guard let inserted else { throw Refusal.userNotInserted }
        return (try UserRecord(fields: inserted), true)
    }

    /// Revokes `user`'s session `sessionHash` (if still live), with its audit row either way.
    func signOut(sessionHash hash: [UInt8], of user: UUID, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws {
        try await pool.transaction(deadline: deadline) { connection in
            try await connection.query("""
                UPDATE sessions SET revoked_at = now() WHERE id = \(Bytes(hash)) AND user_id = \(user) AND revoked_at IS NULL
                """)
            try await connection.insertAudit(origin.record(
                "user.signout", resourceType: "session", resourceID: SessionToken.displayID(hash: hash)))
        }
    }

    /// Revokes every live session of `user`, with its audit row; answers how many.
    func signOutEverywhere(_ user: UUID, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> Int {
        try await pool.transaction(deadline: deadline) { connection in
            let rows = try await connection.query("""
                UPDATE sessions SET revoked_at = now() WHERE user_id = \(user) AND revoked_at IS NULL AND expires_at > now()
                """)
            try await connection.insertAudit(origin.record(
                "user.signout_everywhere", resourceType: "user", resourceID: user.postgresText,
                details: ["sessions_revoked": "\(rows.affected)"]))
            return rows.affected
        }
    }

    /// `user`'s live sessions, newest first, at most 1000.
    func sessions(of user: UUID, deadline: ContinuousClock.Instant?) async throws -> [SessionRecord] {
        try await pool.records("""
            SELECT id, created_at, expires_at, last_activity FROM sessions
            WHERE user_id = \(user) AND revoked_at IS NULL AND expires_at > now()
            ORDER BY created_at DESC LIMIT 1000
            """, as: SessionRecord.self, deadline: deadline)
    }
}
