import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Auth`: sign-in for internal auth gateways, sign-out, and the user's sessions.
public struct AuthService: Auth.ServiceProtocol {
    let pool: PostgresPool
    let authenticator: StoreAuthenticator
    let verifier: IDTokenVerifier
    let trail: AuditTrail

    public init(pool: PostgresPool, authenticator: StoreAuthenticator, verifier: IDTokenVerifier, trail: AuditTrail) {
        self.pool = pool
        self.authenticator = authenticator
        self.verifier = verifier
        self.trail = trail
    }

    /// A sign-in identity after validation: what gets stored.
    struct Identity {
        var provider: String
        var subject: String
        var email: String
        /// The provider vouched for `email`: only then may it link to an account or claim the address.
        var emailVerified: Bool
        var displayName: String?
        var pictureURL: String?
        var timeZone: String?
    }

    public func signIn(request: SignInRequest, context: ServerContext) async throws -> SignInResponse {
        let origin = AuditOrigin(context)
        return try await trail.failures(origin, action: "user.signin", resourceType: "user") {
            let identity = try identity(from: request)
            // The token must not be compressed next to caller-chosen data (CRIME-style leaks).
            context.compressResponses = false
            return try await signIn(identity, origin: origin, deadline: context.deadline)
        }
    }

    private func identity(from request: SignInRequest) throws -> Identity {
        switch request.credential {
        case .identity(let given):
            let provider = try Self.providerName(given.provider, field: "identity.provider")
            let subject = given.providerUserID.trimmingCharacters(in: .whitespaces)
            guard !subject.isEmpty else { throw Validate.invalid("identity.provider_user_id", "is required") }
            guard Validate.fits(subject, 255) else { throw Validate.invalid("identity.provider_user_id", "is longer than 255 characters") }
            guard !subject.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw Validate.invalid("identity.provider_user_id", "contains control characters")
            }
            return Identity(
                provider: provider, subject: subject, email: try Validate.email(given.email, field: "identity.email"),
                emailVerified: given.emailVerified, displayName: try Validate.optionalText(given.displayName, field: "identity.display_name"),
                pictureURL: try Validate.url(given.pictureURL, field: "identity.picture_url"),
                timeZone: try Validate.timeZone(given.timeZone, field: "identity.time_zone"))
        case .idToken(let token):
            let provider = try Self.providerName(token.provider, field: "id_token.provider")
            let timeZone = try Validate.timeZone(token.timeZone, field: "id_token.time_zone")
            let claims = try verifier.verify(token.token, provider: provider)
            return Identity(
                provider: provider, subject: claims.subject, email: try Validate.email(claims.email, field: "id_token.token"),
                emailVerified: claims.emailVerified,
                displayName: claims.name.flatMap { try? Validate.optionalText($0, field: "id_token.token") },
                pictureURL: claims.picture.flatMap { try? Validate.url($0, field: "id_token.token") }, timeZone: timeZone)
        case nil:
            throw Validate.invalid("credential", "send identity (from a gateway) or id_token")
        }
    }

    static func providerName(_ provider: IdentityProvider, field: String) throws -> String {
        switch provider {
        case .google: return "google"
        case .azure: return "azure"
        default: throw Validate.invalid(field, "must be GOOGLE or AZURE")
        }
    }

    private func signIn(_ identity: Identity, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> SignInResponse {
        let (token, hash) = SessionToken.generate()
        let lifetimeSeconds = authenticator.configuration.sessionLifetime.components.seconds
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await pool.transaction(deadline: deadline) { connection in
                    let (user, created) = try await Self.upsertUser(identity, connection: connection)
                    let userID = try Validate.uuid(user.id, field: "user")
                    let session = try await connection.query("""
                        INSERT INTO sessions (id, user_id, expires_at)
                        VALUES (\(Bytes(hash)), \(userID), now() + \(lifetimeSeconds) * interval '1 second')
                        RETURNING expires_at
                        """)
                    try await connection.insertAudit(origin.record(
                        "user.signin", resourceType: "user", resourceID: user.id, userID: userID,
                        details: ["provider": identity.provider, "created": created ? "true" : "false"]))
                    var response = SignInResponse()
                    response.sessionToken = token
                    response.expiresAt = Google_Protobuf_Timestamp(try session.first?.decode("expires_at", as: Date.self))
                    response.user = user
                    response.created = created
                    response.sessionID = SessionToken.displayID(hash: hash)
                    return response
                }
            } catch let error as StoreError where error.sqlState == "23505" {
                // Two first sign-ins of one identity (or one address) raced; the loser finds the
                // winner's user on the next attempt.
                guard attempt < 3 else {
                    throw RPCError(
                        code: .aborted, message: "another sign-in for this identity was in progress; retry",
                        details: ErrorDetails(reason: "SIGN_IN_CONFLICT"))
                }
                continue
            }
        }
    }

    /// Finds the user by provider identity; else, when the provider vouched for the email,
    /// links the identity to the account holding that verified address if it has no identity
    /// yet; else creates an account. An unverified email never links and never claims an
    /// address (README, Identity: "How accounts are matched").
    static func upsertUser(_ identity: Identity, connection: PostgresConnection) async throws -> (User, Bool) {
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
            RETURNING \(unsafeSQL: UserRows.columns)
            """).first {
            return (try UserRows.user(row), false)
        }
        if identity.emailVerified, let row = try await connection.query("""
            SELECT id, oauth_provider, oauth_id FROM users
            WHERE email = \(identity.email) AND email_verified AND deleted_at IS NULL FOR UPDATE
            """).first {
            if let provider = try row.decode("oauth_provider", as: String.self) {
                // A concurrent first sign-in of this same identity linked it while we waited:
                // the next attempt finds it by identity.
                if provider == identity.provider, try row.decode("oauth_id", as: String.self) == identity.subject {
                    throw StoreError(sqlState: "40001", serverMessage: "identity linked concurrently")
                }
                // Which provider it is stays unsaid: that would tell anyone who knows an address
                // how its owner signs in.
                throw RPCError(
                    code: .failedPrecondition,
                    message: "this email belongs to an account that signs in with another identity; sign in with that one",
                    details: ErrorDetails(reason: "EMAIL_LINKED_TO_OTHER_IDENTITY"))
            }
            let linkedRow = try await connection.query("""
                UPDATE users SET oauth_provider = \(identity.provider), oauth_id = \(identity.subject),
                       display_name = COALESCE(\(identity.displayName), display_name),
                       profile_picture_url = COALESCE(\(identity.pictureURL), profile_picture_url),
                       timezone = COALESCE(\(identity.timeZone), timezone), updated_at = now()
                WHERE id = \(try row.require("id", as: UUID.self))
                RETURNING \(unsafeSQL: UserRows.columns)
                """).first
            guard let linkedRow else { throw StoreError(sqlState: "40001", serverMessage: "user vanished while linking") }
            return (try UserRows.user(linkedRow), false)
        }
        let inserted = try await connection.query("""
            INSERT INTO users (email, email_verified, display_name, oauth_provider, oauth_id, profile_picture_url, timezone)
            VALUES (\(identity.email), \(identity.emailVerified), \(identity.displayName), \(identity.provider), \(identity.subject),
                    \(identity.pictureURL), \(identity.timeZone))
            RETURNING \(unsafeSQL: UserRows.columns)
            """).first
        guard let inserted else { throw RPCError(code: .internal, message: "user insert returned nothing") }
        return (try UserRows.user(inserted), true)
    }

    public func signOut(request: SignOutRequest, context: ServerContext) async throws -> SignOutResponse {
        guard let hash = context.sessionHash else {
            throw RPCError(
                code: .failedPrecondition, message: "this call was not made with a session token; use SignOutEverywhere",
                details: ErrorDetails(reason: "NO_SESSION"))
        }
        let origin = AuditOrigin(context)
        let userID = try context.actingUser()
        try await pool.transaction(deadline: context.deadline) { connection in
            try await connection.query("""
                UPDATE sessions SET revoked_at = now() WHERE id = \(Bytes(hash)) AND user_id = \(userID) AND revoked_at IS NULL
                """)
            try await connection.insertAudit(origin.record("user.signout", resourceType: "session", resourceID: SessionToken.displayID(hash: hash)))
        }
        authenticator.forget(sessionHash: hash)
        return SignOutResponse()
    }

    public func signOutEverywhere(request: SignOutEverywhereRequest, context: ServerContext) async throws -> SignOutEverywhereResponse {
        let origin = AuditOrigin(context)
        let userID = try context.actingUser()
        let revoked = try await pool.transaction(deadline: context.deadline) { connection in
            let rows = try await connection.query("""
                UPDATE sessions SET revoked_at = now() WHERE user_id = \(userID) AND revoked_at IS NULL AND expires_at > now()
                """)
            try await connection.insertAudit(origin.record(
                "user.signout_everywhere", resourceType: "user", resourceID: userID.postgresText,
                details: ["sessions_revoked": "\(rows.affected)"]))
            return rows.affected
        }
        authenticator.forget(userID: userID.postgresText)
        return SignOutEverywhereResponse.with { $0.sessionsRevoked = Int32(clamping: revoked) }
    }

    public func listSessions(request: ListSessionsRequest, context: ServerContext) async throws -> ListSessionsResponse {
        let userID = try context.actingUser()
        let current = context.sessionHash
        let rows = try await pool.withConnection(deadline: context.deadline) { connection in
            try await connection.query("""
                SELECT id, created_at, expires_at, last_activity FROM sessions
                WHERE user_id = \(userID) AND revoked_at IS NULL AND expires_at > now()
                ORDER BY created_at DESC LIMIT 1000
                """)
        }
        return try ListSessionsResponse.with { response in
            response.sessions = try rows.map { row in
                let hash = try row.require("id", as: Bytes.self).bytes
                return SessionInfo.with {
                    $0.id = SessionToken.displayID(hash: hash)
                    $0.current = hash == current
                    $0.createdAt = Google_Protobuf_Timestamp(try? row.require("created_at", as: Date.self))
                    $0.expiresAt = Google_Protobuf_Timestamp(try? row.require("expires_at", as: Date.self))
                    $0.lastActivity = Google_Protobuf_Timestamp(try? row.require("last_activity", as: Date.self))
                }
            }
        }
    }

    public func purgeExpiredSessions(request: PurgeExpiredSessionsRequest, context: ServerContext) async throws -> PurgeExpiredSessionsResponse {
        let deleted = try await SessionMaintenance(pool: pool).purgeExpired(origin: AuditOrigin(context))
        return PurgeExpiredSessionsResponse.with { $0.deleted = Int64(deleted) }
    }
}
