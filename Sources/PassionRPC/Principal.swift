import PassionWire

/// Who is calling, as established before a handler runs.
public struct Principal: Sendable, Hashable, CustomStringConvertible {
    /// The kind of caller.
    public enum Kind: String, Sendable, Hashable {
        case anonymous
        case user
        case service
        case admin
    }

    public var kind: Kind
    /// User id, service name or admin name; empty for anonymous callers.
    public var id: String
    /// What a service may do, for example `progress:write`.
    public var scopes: Set<String>

    public init(kind: Kind, id: String = "", scopes: Set<String> = []) {
        self.kind = kind
        self.id = id
        self.scopes = scopes
    }

    public static let anonymous = Principal(kind: .anonymous)

    public var description: String { id.isEmpty ? kind.rawValue : "\(kind.rawValue):\(id)" }
}

/// Turns a call's credentials into a principal. The server calls it once per call, before the
/// handler, and enforces the method's required principal with the result.
public protocol Authenticator: Sendable {
    /// Throws UNAUTHENTICATED for credentials that are present but invalid.
    func authenticate(_ credentials: CallCredentials) async throws -> Principal
}

/// What a caller presented.
public struct CallCredentials: Sendable {
    public var method: MethodDescriptor
    public var metadata: Metadata
    public var peer: String
    /// Common name of a verified client certificate (mTLS).
    public var peerCertificateName: String?
}

/// Treats every caller as anonymous: methods that require a principal answer UNAUTHENTICATED.
public struct AnonymousAuthenticator: Authenticator {
    public init() {}
    public func authenticate(_ credentials: CallCredentials) async throws -> Principal { .anonymous }
}

extension RequiredPrincipal {
    /// Nil when `principal` may call; otherwise the error to answer with.
    func check(_ principal: Principal, method: MethodDescriptor) -> RPCError? {
        let allowed: Bool
        switch self {
        case .anyone: allowed = true
        case .user: allowed = principal.kind == .user || principal.kind == .service || principal.kind == .admin
        case .service: allowed = principal.kind == .service || principal.kind == .admin
        case .admin: allowed = principal.kind == .admin || principal.scopes.contains("admin")
        }
        if allowed { return nil }
        if principal.kind == .anonymous {
            return RPCError(code: .unauthenticated, message: "\(method.fullName) requires a \(rawValue) credential")
        }
        return RPCError(code: .permissionDenied, message: "\(method.fullName) requires a \(rawValue) principal")
    }
}
