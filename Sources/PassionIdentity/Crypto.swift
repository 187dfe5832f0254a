import COpenSSL
import Foundation

/// The few cryptographic primitives identity needs, from the system's OpenSSL.
enum Crypto {
    /// SHA-256 of `bytes`.
    static func sha256(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let input = Array(bytes)
        _ = input.withUnsafeBytes { buffer in
            EVP_Digest(buffer.baseAddress, buffer.count, &digest, &length, EVP_sha256(), nil)
        }
        return digest
    }

    static func sha256(_ text: String) -> [UInt8] { sha256(Array(text.utf8)) }

    /// `count` bytes from OpenSSL's CSPRNG; traps only if the system has no entropy source,
    /// where handing out guessable tokens would be worse.
    static func randomBytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&bytes, Int32(count)) == 1 else { fatalError("OpenSSL RAND_bytes failed: no entropy") }
        return bytes
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    static func bytes(hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count.isMultiple(of: 2) else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = nibble(digits[index]), let low = nibble(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// RFC 4648 §5 without padding.
    static func base64URL(_ bytes: some Collection<UInt8>) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func bytes(base64URL text: some StringProtocol) -> [UInt8]? {
        guard text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else { return nil }
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        standard += String(repeating: "=", count: (4 - standard.count % 4) % 4)
        return Data(base64Encoded: standard).map { Array($0) }
    }

    /// Compares without an early exit, so timing does not reveal the first differing byte.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}

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
