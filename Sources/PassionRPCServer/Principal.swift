import PassionTLS
import PassionWire

/// Who is calling, as established before a handler runs.
public struct Principal: Sendable, Hashable, CustomStringConvertible {
    /// The kind of caller.
    public enum Kind: String, Sendable, Hashable {
        case anonymous
        case user
        case service
    }

    public var kind: Kind
    /// User id or service name; empty for anonymous callers.
    public var id: String
    /// What a service may do, for example `progress:write`; `admin` allows everything.
    public var scopes: Set<String>
    /// The user a service acts for (from the `as-user` metadata); nil otherwise.
    public var actingForUser: String?
    /// For a user: the session the call was made with, as the authenticator names it.
    public var sessionID: String?

    public init(
        kind: Kind, id: String = "", scopes: Set<String> = [], actingForUser: String? = nil, sessionID: String? = nil
    ) {
        self.kind = kind
        self.id = id
        self.scopes = scopes
        self.actingForUser = actingForUser
        self.sessionID = sessionID
    }

    public static let anonymous = Principal(kind: .anonymous)

    /// The user whose data the call reads and changes: the signed-in user, or the user a
    /// service acts for.
    public var userID: String? { kind == .user ? id : actingForUser }

    /// Whether a service holds `scope` (or `admin`). Users hold no scopes.
    public func holds(_ scope: String) -> Bool {
        kind == .service && (scopes.contains(scope) || scopes.contains(Self.adminScope))
    }

    /// The scope that allows every method.
    public static let adminScope = "admin"

    /// `user:<id>`, `service:<name>` or `service:<name>>user:<id>` when acting for a user.
    public var description: String {
        let base = id.isEmpty ? kind.rawValue : "\(kind.rawValue):\(id)"
        return actingForUser.map { "\(base)>user:\($0)" } ?? base
    }
}

/// Turns a call's credentials into a principal, and has a last say before the handler runs.
/// The server calls it once per call and enforces the method's required principal and scope
/// in between (`MethodDescriptor.check`).
public protocol Authenticator: Sendable {
    /// Throws UNAUTHENTICATED for credentials that are present but invalid.
    func authenticate(_ credentials: CallCredentials) async throws -> Principal
    /// Runs after the principal passed the method's policy, for rate limits; throws to refuse.
    func admit(_ principal: Principal, credentials: CallCredentials) async throws
    /// Told of every call refused before its handler ran (for an audit trail).
    func refused(_ credentials: CallCredentials, principal: Principal?, error: RPCError) async
}

extension Authenticator {
    public func admit(_ principal: Principal, credentials: CallCredentials) async throws {}
    public func refused(_ credentials: CallCredentials, principal: Principal?, error: RPCError) async {}

    /// Authenticates, enforces the method's policy and admits: the one place every call passes.
    func principal(for credentials: CallCredentials, metrics: ServerMetrics = .disabled) async throws -> Principal {
        var principal: Principal?
        do {
            let authenticated: Principal
            do {
                authenticated = try await authenticate(credentials)
            } catch let refusal as IdentifiedRefusal {
                principal = refusal.principal
                throw refusal.error
            }
            principal = authenticated
            if let denied = credentials.method.check(authenticated) { throw denied }
            try await admit(authenticated, credentials: credentials)
            return authenticated
        } catch {
            let refusal = RPCError(converting: error)
            metrics.refusedBeforeHandler(refusal, principal: principal)
            await refused(credentials, principal: principal, error: refusal)
            throw error
        }
    }
}

/// Thrown by `Authenticator.authenticate` when the caller proved who it is but the call is
/// still refused (a malformed `as-user`, say), so the refusal is recorded against that caller
/// rather than as anonymous. Callers see only `error`.
public struct IdentifiedRefusal: Error {
    public var principal: Principal
    public var error: RPCError

    public init(principal: Principal, error: RPCError) {
        self.principal = principal
        self.error = error
    }
}

/// What a caller presented.
public struct CallCredentials: Sendable {
    public var method: MethodDescriptor
    public var metadata: Metadata
    public var peer: String
    /// The names of a verified client certificate (mTLS).
    public var peerCertificate: PeerCertificateNames?

    public init(method: MethodDescriptor, metadata: Metadata, peer: String, peerCertificate: PeerCertificateNames?) {
        self.method = method
        self.metadata = metadata
        self.peer = peer
        self.peerCertificate = peerCertificate
    }
}

/// Treats every caller as anonymous: methods that require a principal answer UNAUTHENTICATED.
public struct AnonymousAuthenticator: Authenticator {
    public init() {}
    public func authenticate(_ credentials: CallCredentials) async throws -> Principal { .anonymous }
}

extension MethodDescriptor {
    /// Nil when `principal` may call this method; otherwise the error to answer with.
    ///
    /// - user methods: a signed-in user, or a service holding the method's scope that names the
    ///   user it acts for;
    /// - service methods: a service holding the method's scope;
    /// - admin methods: a service holding `admin`;
    /// - user-or-service methods: a user, or a service holding the method's scope.
    public func check(_ principal: Principal) -> RPCError? {
        if principal.kind == .anonymous, self.principal != .anyone {
            return RPCError(
                code: .unauthenticated, message: "\(fullName) requires a \(self.principal.rawValue) credential",
                details: ErrorDetails(reason: "CREDENTIAL_REQUIRED"))
        }
        if principal.kind == .user, principal.actingForUser != nil {
            return RPCError(
                code: .permissionDenied, message: "only services may act for another user (as-user)",
                details: ErrorDetails(reason: "AS_USER_NOT_ALLOWED"))
        }
        switch self.principal {
        case .anyone:
            return nil
        case .user:
            if principal.kind == .user { return nil }
            if let missing = missingScope(principal) { return missing }
            guard principal.actingForUser != nil else {
                return RPCError(
                    code: .permissionDenied, message: "\(fullName) acts on a user's data: name the user in as-user metadata",
                    details: ErrorDetails(reason: "AS_USER_REQUIRED", fields: ["metadata": "as-user"]))
            }
            return nil
        case .service:
            guard principal.kind == .service else { return wrongKind(principal) }
            return missingScope(principal)
        case .userOrService:
            return principal.kind == .user ? nil : missingScope(principal)
        case .admin:
            guard principal.kind == .service else { return wrongKind(principal) }
            guard principal.holds(Principal.adminScope) else {
                return RPCError(
                    code: .permissionDenied, message: "\(fullName) requires the admin scope",
                    details: ErrorDetails(reason: "SCOPE_REQUIRED", fields: ["scope": Principal.adminScope]))
            }
            return nil
        }
    }

    private func missingScope(_ principal: Principal) -> RPCError? {
        guard let scope, !principal.holds(scope) else { return nil }
        return RPCError(
            code: .permissionDenied, message: "\(fullName) requires the \(scope) scope",
            details: ErrorDetails(reason: "SCOPE_REQUIRED", fields: ["scope": scope]))
    }

    private func wrongKind(_ principal: Principal) -> RPCError {
        RPCError(
            code: .permissionDenied, message: "\(fullName) requires a \(self.principal.rawValue) principal",
            details: ErrorDetails(reason: "PRINCIPAL_NOT_ALLOWED"))
    }
}
