import Foundation
import PassionTLS

/// Bearer session tokens: 256 random bits, base64url (43 characters). Only their SHA-256 is
/// stored, so a database leak yields no usable credential.
public enum SessionToken {
    /// A new token and the hash to store for it.
    public static func generate() -> (token: String, hash: [UInt8]) {
        let token = Crypto.base64URL(Crypto.randomBytes(32))
        return (token, Crypto.sha256(token))
    }

    /// The stored hash of a well-formed token; nil for anything that cannot be one.
    public static func hash(_ token: String) -> [UInt8]? {
        guard token.utf8.count == 43, let raw = Crypto.bytes(base64URL: token), raw.count == 32 else { return nil }
        return Crypto.sha256(token)
    }

    /// The short id ListSessions shows: 16 hex digits of the hash.
    public static func displayID(hash: [UInt8]) -> String { Crypto.hex(hash.prefix(8)) }
}
