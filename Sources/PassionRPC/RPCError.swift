import PassionWire

/// A call that ended with a status other than OK, as the caller sees it and as a handler
/// throws it.
public struct RPCError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: StatusCode
    /// For people; never contains SQL, tokens or payload bytes.
    public var message: String
    /// Machine-readable detail a client can switch on.
    public var details: ErrorDetails?
    /// Trailing metadata sent with the status.
    public var metadata: Metadata
    /// Set when the server refused the call before processing it: retrying is always safe.
    public var wasRefused: Bool

    public init(
        code: StatusCode, message: String, details: ErrorDetails? = nil, metadata: Metadata = Metadata(),
        wasRefused: Bool = false
    ) {
        self.code = code
        self.message = message
        self.details = details
        self.metadata = metadata
        self.wasRefused = wasRefused
    }

    public var description: String {
        var text = "\(code.name): \(message)"
        if let details { text += " [\(details)]" }
        return text
    }
}

/// A reason such as `INSUFFICIENT_FUNDS` with key/values that explain it (`balance: 40`).
public struct ErrorDetails: Hashable, Sendable, CustomStringConvertible {
    /// Upper-case identifier, at most 255 bytes.
    public var reason: String
    public var fields: [String: String]

    public init(reason: String, fields: [String: String] = [:]) {
        self.reason = reason
        self.fields = fields
    }

    public var description: String {
        let pairs = fields.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return ([reason] + pairs).joined(separator: " ")
    }
}

/// A domain error that knows which status it becomes on the wire.
public protocol RPCErrorConvertible: Error {
    var rpcError: RPCError { get }
}

extension RPCError {
    /// The status any error becomes on the wire: unknown errors become UNKNOWN without their text.
    public init(converting error: any Error) {
        switch error {
        case let error as RPCError: self = error
        case let error as any RPCErrorConvertible: self = error.rpcError
        case is CancellationError: self = RPCError(code: .cancelled, message: "call cancelled")
        default: self = RPCError(code: .unknown, message: "handler failed")
        }
    }

    /// Builds the trailer fields from a status.
    package func trailersHead() -> TrailersHead {
        var fields = Metadata()
        for (key, value) in (details?.fields ?? [:]).sorted(by: { $0.key < $1.key }) where Metadata.isValidKey(key) {
            fields.add(key, value)
        }
        return TrailersHead(
            status: code.rawValue, message: message, reason: details?.reason ?? "", fields: fields,
            metadata: metadata)
    }

    /// Reads a status from received trailers; nil when the status is OK.
    init?(trailers: TrailersHead) {
        guard trailers.status != 0 else { return nil }
        var details: ErrorDetails?
        if !trailers.reason.isEmpty || !trailers.fields.isEmpty {
            var fields: [String: String] = [:]
            for entry in trailers.fields { fields[entry.key] = entry.stringValue ?? "" }
            details = ErrorDetails(reason: trailers.reason, fields: fields)
        }
        self.init(
            code: StatusCode(rawValue: trailers.status), message: trailers.message, details: details,
            metadata: trailers.metadata)
    }
}
