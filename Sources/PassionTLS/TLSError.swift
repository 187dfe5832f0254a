import COpenSSL

/// A TLS failure: bad configuration, a failed handshake or a broken record.
///
/// `message` carries OpenSSL's reason (for example "certificate verify failed: certificate has
/// expired"), never key material.
public struct TLSError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    /// Builds an error from `context` and everything on this thread's OpenSSL error queue,
    /// emptying the queue.
    static func fromQueue(_ context: String) -> TLSError {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            reasons.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return TLSError(reasons.isEmpty ? context : "\(context): \(reasons.joined(separator: "; "))")
    }

    public var description: String { "TLS: \(message)" }
}
