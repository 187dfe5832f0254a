/// How many messages flow each way in a call.
public enum CallKind: String, Sendable, Hashable {
    case unary
    case serverStreaming = "server_streaming"
    case clientStreaming = "client_streaming"
    case bidirectional

    /// Whether the client sends exactly one message.
    public var isSingleRequest: Bool { self == .unary || self == .serverStreaming }
    /// Whether the server answers with exactly one message.
    public var isSingleResponse: Bool { self == .unary || self == .clientStreaming }
}

/// Whether repeating a call is safe; declared per method in `Protocol/` (`passion.v1.method`).
public enum Idempotency: String, Sendable, Hashable {
    /// Not declared: the client never retries it after it may have reached the server.
    case unknown
    /// Repeating has the same effect as one call (for example keyed by an idempotency key).
    case idempotent
    /// Reads only.
    case noSideEffects = "no_side_effects"

    /// Whether a client may retry the call after a failure that might have reached the server.
    public var allowsRetry: Bool { self != .unknown }
}

/// Who may call a method; declared per method in `Protocol/` and enforced before the handler.
public enum RequiredPrincipal: String, Sendable, Hashable {
    /// Anyone who completed the handshake.
    case anyone
    /// A signed-in user (bearer session token).
    case user
    /// An internal service with a credential.
    case service
    /// An internal service holding the `admin` scope.
    case admin
    /// A signed-in user, or a service holding the method's scope (for any user, or none).
    case userOrService = "user or service"
}

/// Everything the runtime knows about one method: generated from `Protocol/`.
public struct MethodDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// For example `passion.v1.Diagnostics`.
    public var service: String
    /// For example `Echo`.
    public var method: String
    public var kind: CallKind
    public var idempotency: Idempotency
    public var principal: RequiredPrincipal
    /// The scope a service needs to call this method, for example `progress:write`.
    public var scope: String?
    /// Rate-limit tokens one call takes. Default 1.
    public var cost: Int

    public init(
        service: String, method: String, kind: CallKind, idempotency: Idempotency = .unknown,
        principal: RequiredPrincipal = .anyone, scope: String? = nil, cost: Int = 1
    ) {
        self.service = service
        self.method = method
        self.kind = kind
        self.idempotency = idempotency
        self.principal = principal
        self.scope = scope
        self.cost = cost
    }

    /// `service/method`: what a CALL frame names.
    public var fullName: String { "\(service)/\(method)" }

    public var description: String { fullName }
}
