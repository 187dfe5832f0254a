import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Auth`: sign-in for internal auth gateways, sign-out, and the user's sessions.
public struct AuthService: Auth.ServiceProtocol {
    let store: IdentityStore
    /// For the session purge, which runs its own statements.
    let pool: PostgresPool
    let authenticator: StoreAuthenticator
    let verifier: IDTokenVerifier
    let trail: AuditTrail

    public init(pool: PostgresPool, authenticator: StoreAuthenticator, verifier: IDTokenVerifier, trail: AuditTrail) {
        self.store = IdentityStore(pool: pool)
        self.pool = pool
        self.authenticator = authenticator
        self.verifier = verifier
        self.trail = trail
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

    private func identity(from request: SignInRequest) throws -> IdentityStore.SignInIdentity {
        switch request.credential {
        case .identity(let given):
            let provider = try Self.providerName(given.provider, field: "identity.provider")
            let subject = given.providerUserID.trimmingCharacters(in: .whitespaces)
            guard !subject.isEmpty else { throw Validate.invalid("identity.provider_user_id", "is required") }
            guard Validate.fits(subject, 255) else { throw Validate.invalid("identity.provider_user_id", "is longer than 255 characters") }
            guard !subject.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw Validate.invalid("identity.provider_user_id", "contains control characters")
            }
            return IdentityStore.SignInIdentity(
                provider: provider, subject: subject, email: try Validate.email(given.email, field: "identity.email"),
                emailVerified: given.emailVerified, displayName: try Validate.optionalText(given.displayName, field: "identity.display_name"),
                pictureURL: try Validate.url(given.pictureURL, field: "identity.picture_url"),
                timeZone: try Validate.timeZone(given.timeZone, field: "identity.time_zone"))
        case .idToken(let token):
            let provider = try Self.providerName(token.provider, field: "id_token.provider")
            let timeZone = try Validate.timeZone(token.timeZone, field: "id_token.time_zone")
            let claims = try verifier.verify(token.token, provider: provider)
            return IdentityStore.SignInIdentity(
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

    private func signIn(
        _ identity: IdentityStore.SignInIdentity, origin: AuditOrigin, deadline: ContinuousClock.Instant?
    ) async throws -> SignInResponse {
        let (token, hash) = SessionToken.generate()
        let lifetimeSeconds = authenticator.configuration.sessionLifetime.components.seconds
        var attempt = 0
        while true {
            attempt += 1
            do {
                let signedIn = try await store.signIn(
                    identity, sessionHash: hash, lifetimeSeconds: lifetimeSeconds, origin: origin, deadline: deadline)
                var response = SignInResponse()
                response.sessionToken = token
                response.expiresAt = Google_Protobuf_Timestamp(signedIn.expiresAt)
                response.user = UsersService.user(signedIn.user)
                response.created = signedIn.created
                response.sessionID = SessionToken.displayID(hash: hash)
                return response
            } catch let error as StoreError where error.sqlState == "23505" {
                // Two first sign-ins of one identity (or one address) raced; the loser finds the
                // winner's user on the next attempt.
                guard attempt < 3 else {
                    throw RPCError(
                        code: .aborted, message: "another sign-in for this identity was in progress; retry",
                        details: ErrorDetails(reason: "SIGN_IN_CONFLICT"))
                }
                continue
            } catch IdentityStore.Refusal.emailLinkedToOtherIdentity {
                // Which provider it is stays unsaid: that would tell anyone who knows an address
                // how its owner signs in.
                throw RPCError(
                    code: .failedPrecondition,
                    message: "this email belongs to an account that signs in with another identity; sign in with that one",
                    details: ErrorDetails(reason: "EMAIL_LINKED_TO_OTHER_IDENTITY"))
            } catch IdentityStore.Refusal.userNotInserted {
                throw RPCError(code: .internal, message: "user insert returned nothing")
            }
        }
    }

    public func signOut(request: SignOutRequest, context: ServerContext) async throws -> SignOutResponse {
        guard let hash = context.sessionHash else {
            throw RPCError(
                code: .failedPrecondition, message: "this call was not made with a session token; use SignOutEverywhere",
                details: ErrorDetails(reason: "NO_SESSION"))
        }
        let origin = AuditOrigin(context)
        let userID = try context.actingUser()
        try await store.signOut(sessionHash: hash, of: userID, origin: origin, deadline: context.deadline)
        authenticator.forget(sessionHash: hash)
        return SignOutResponse()
    }

    public func signOutEverywhere(request: SignOutEverywhereRequest, context: ServerContext) async throws -> SignOutEverywhereResponse {
        let origin = AuditOrigin(context)
        let userID = try context.actingUser()
        let revoked = try await store.signOutEverywhere(userID, origin: origin, deadline: context.deadline)
        authenticator.forget(userID: userID.postgresText)
        return SignOutEverywhereResponse.with { $0.sessionsRevoked = Int32(clamping: revoked) }
    }

    public func listSessions(request: ListSessionsRequest, context: ServerContext) async throws -> ListSessionsResponse {
        let userID = try context.actingUser()
        let current = context.sessionHash
        let sessions = try await store.sessions(of: userID, deadline: context.deadline)
        return ListSessionsResponse.with { response in
            response.sessions = sessions.map { session in
                SessionInfo.with {
                    $0.id = SessionToken.displayID(hash: session.hash)
                    $0.current = session.hash == current
                    $0.createdAt = Google_Protobuf_Timestamp(session.createdAt)
                    $0.expiresAt = Google_Protobuf_Timestamp(session.expiresAt)
                    $0.lastActivity = Google_Protobuf_Timestamp(session.lastActivity)
                }
            }
        }
    }

    public func purgeExpiredSessions(request: PurgeExpiredSessionsRequest, context: ServerContext) async throws -> PurgeExpiredSessionsResponse {
        let deleted = try await SessionMaintenance(pool: pool).purgeExpired(origin: AuditOrigin(context))
        return PurgeExpiredSessionsResponse.with { $0.deleted = Int64(deleted) }
    }
}
