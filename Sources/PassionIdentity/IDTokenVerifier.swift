import COpenSSL
import Foundation
import PassionRPCServer
import PassionTLS
import PassionJSON

/// An OpenID Connect provider whose ID tokens SignIn verifies offline, against a JWKS file.
public struct IdentityProviderConfiguration: Sendable, Hashable {
    /// `google` or `azure`.
    public var provider: String
    public var jwksPath: String
    /// Accepted `iss` values.
    public var issuers: [String]
    /// Accepted `aud` values: the OAuth client ids of our apps.
    public var audiences: [String]

    public init(provider: String, jwksPath: String, issuers: [String], audiences: [String]) {
        self.provider = provider
        self.jwksPath = jwksPath
        self.issuers = issuers
        self.audiences = audiences
    }

    /// `PROVIDER:jwks=PATH,audience=CLIENT_ID[,audience=...][,issuer=URL...]`; Google's issuers
    /// are known, Azure's (per tenant) must be given.
    public init(parsing text: String) throws {
        guard let colon = text.firstIndex(of: ":") else {
            throw IdentityConfigurationError("--oidc \(text): expected PROVIDER:jwks=PATH,audience=ID[,issuer=URL]")
        }
        provider = String(text[..<colon])
        guard ["google", "azure"].contains(provider) else {
            throw IdentityConfigurationError("--oidc: provider must be google or azure, not \(provider)")
        }
        var jwks: String?
        issuers = []
        audiences = []
        for pair in text[text.index(after: colon)...].split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw IdentityConfigurationError("--oidc \(provider): \"\(pair)\" is not key=value") }
            switch parts[0] {
            case "jwks": jwks = parts[1]
            case "audience": audiences.append(parts[1])
            case "issuer": issuers.append(parts[1])
            default: throw IdentityConfigurationError("--oidc \(provider): unknown key \(parts[0]) (jwks, audience, issuer)")
            }
        }
        guard let jwks else { throw IdentityConfigurationError("--oidc \(provider): jwks=PATH is required") }
        guard !audiences.isEmpty else { throw IdentityConfigurationError("--oidc \(provider): audience=CLIENT_ID is required") }
        if issuers.isEmpty {
            guard provider == "google" else {
                throw IdentityConfigurationError("--oidc azure: issuer=https://login.microsoftonline.com/<tenant>/v2.0 is required")
            }
            issuers = ["https://accounts.google.com", "accounts.google.com"]
        }
        jwksPath = jwks
    }
}

/// What a verified ID token says about its user.
public struct VerifiedClaims: Sendable, Hashable {
    public var provider: String
    public var subject: String
    public var email: String
    /// Whether the provider vouches that the user controls `email` (see `emailVerified(_:provider:)`).
    /// Only a verified email may link the token to an existing account or claim an address.
    public var emailVerified: Bool
    public var name: String?
    public var picture: String?
}

/// Verifies RS256 ID tokens: signature against the provider's JWKS (read at start, no network),
/// issuer, audience and authorized party, expiry, not-before and issued-at with a minute of
/// clock skew, and a bounded lifetime.
public struct IDTokenVerifier: Sendable {
    private let providers: [String: (configuration: IdentityProviderConfiguration, keys: [String: RSAPublicKey])]
    public static let clockSkew: TimeInterval = 60
    /// Google and Microsoft issue ID tokens for an hour; a token that claims to live longer than
    /// a day was minted to be replayed.
    public static let maximumLifetime: TimeInterval = 86_400
    /// `users.oauth_id` holds at most this many characters; a longer subject is refused rather
    /// than cut, which would make two subjects one account.
    public static let maximumSubjectLength = 255
    public init(_ configurations: [IdentityProviderConfiguration]) throws {
        var providers: [String: (IdentityProviderConfiguration, [String: RSAPublicKey])] = [:]
        for configuration in configurations {
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: configuration.jwksPath))
            } catch {
                throw IdentityConfigurationError("cannot read JWKS \(configuration.jwksPath): \(error.localizedDescription)")
            }
            providers[configuration.provider] = (configuration, try Self.keys(jwks: data, path: configuration.jwksPath))
        }
        self.providers = providers
    }

    static func keys(jwks: Data, path: String) throws -> [String: RSAPublicKey] {
        struct Set: Decodable {
            struct Key: Decodable {
                var kty: String
                var kid: String?
                var n: String?
                var e: String?
                var use: String?
                var alg: String?
            }
            var keys: [Key]
        }
        let set: Set
        do {
            set = try JSONDecoder().decode(Set.self, from: jwks)
        } catch {
            throw IdentityConfigurationError("\(path) is not a JWKS ({\"keys\": [...]}): \(error)")
        }
        var keys: [String: RSAPublicKey] = [:]
        for key in set.keys where key.kty == "RSA" && key.use != "enc" && (key.alg == nil || key.alg == "RS256") {
            guard let kid = key.kid, let n = key.n.flatMap({ Crypto.bytes(base64URL: $0) }),
                let e = key.e.flatMap({ Crypto.bytes(base64URL: $0) }), let publicKey = RSAPublicKey(modulus: n, exponent: e)
            else {
                throw IdentityConfigurationError("\(path): an RSA key without a usable kid, n and e")
            }
            keys[kid] = publicKey
        }
        guard !keys.isEmpty else { throw IdentityConfigurationError("\(path) has no RS256 signing key") }
        return keys
    }

    /// The claims of a valid token from `provider`; UNAUTHENTICATED naming what is wrong otherwise.
    public func verify(_ token: String, provider: String, now: Date = Date()) throws -> VerifiedClaims {
        guard let (configuration, keys) = providers[provider] else {
            throw RPCError(
                code: .failedPrecondition, message: "ID tokens from \(provider) are not configured on this server",
                details: ErrorDetails(reason: "PROVIDER_NOT_CONFIGURED", fields: ["field": "id_token.provider"]))
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = Crypto.bytes(base64URL: parts[0]),
            let payloadBytes = Crypto.bytes(base64URL: parts[1]), let signature = Crypto.bytes(base64URL: parts[2]),
            case .object(let header)? = try? StrictJSON.parse(headerBytes),
            case .object(let claims)? = try? StrictJSON.parse(payloadBytes)
        else {
            throw Self.invalid("the ID token is not a JWT (or names a key twice)", reason: "ID_TOKEN_MALFORMED")
        }
        guard header["alg"]?.string == "RS256" else {
            throw Self.invalid("the ID token must be signed with RS256", reason: "ID_TOKEN_ALGORITHM")
        }
        // RFC 7515 §4.1.11: a critical extension the verifier does not understand voids the token,
        // and this verifier understands none.
        guard header["crit"] == nil else {
            throw Self.invalid("the ID token names critical header extensions this server does not support", reason: "ID_TOKEN_CRITICAL_HEADER")
        }
        guard let kid = header["kid"]?.string, let key = keys[kid] else {
            throw Self.invalid("the ID token's signing key is not in the configured JWKS", reason: "ID_TOKEN_KEY_UNKNOWN")
        }
        let signed = Array("\(parts[0]).\(parts[1])".utf8)
        guard key.verifySHA256(signature: signature, message: signed) else {
            throw Self.invalid("the ID token's signature does not verify", reason: "ID_TOKEN_SIGNATURE")
        }
        guard let issuer = claims["iss"]?.string, configuration.issuers.contains(issuer) else {
            throw Self.invalid("the ID token's issuer is not \(provider)'s", reason: "ID_TOKEN_ISSUER")
        }
        try Self.checkAudience(claims, configuration: configuration)
        try Self.checkTimes(claims, now: now.timeIntervalSince1970)
        guard let subject = claims["sub"]?.string, !subject.isEmpty else {
            throw Self.invalid("the ID token names no subject", reason: "ID_TOKEN_MALFORMED")
        }
        // A subject is compared as stored; control characters (a NUL above all) would not survive
        // storage unchanged.
        guard !subject.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw Self.invalid("the ID token's subject contains control characters", reason: "ID_TOKEN_MALFORMED")
        }
        guard subject.unicodeScalars.count <= Self.maximumSubjectLength else {
            throw Self.invalid(
                "the ID token's subject is longer than \(Self.maximumSubjectLength) characters", reason: "ID_TOKEN_SUBJECT_TOO_LONG")
        }
        // Only `email` is an address; `preferred_username` is a display handle the user can set
        // (Microsoft says so), so it never stands in for one.
        guard let email = claims["email"]?.string, email.contains("@") else {
            throw Self.invalid("the ID token carries no email", reason: "ID_TOKEN_NO_EMAIL")
        }
        return VerifiedClaims(
            provider: provider, subject: subject, email: email, emailVerified: Self.emailVerified(claims, provider: provider),
            name: claims["name"]?.string, picture: claims["picture"]?.string)
    }

    /// Whether the provider vouches for the email, as each documents it: Google sends
    /// `email_verified` (true, or "true" in older tokens); Microsoft's `email` is never verified
    /// unless the optional claim `xms_edov` (email domain owner verified) is true. A missing claim
    /// is never a yes.
    static func emailVerified(_ claims: [String: StrictJSON], provider: String) -> Bool {
        switch provider {
        case "google": return claims["email_verified"] == .bool(true) || claims["email_verified"] == .string("true")
        case "azure": return claims["xms_edov"] == .bool(true)
        default: return false
        }
    }

    /// OIDC Core §3.1.3.7: the token must list one of our client ids as an audience; when it
    /// lists several, `azp` must be present and be one of ours. With a single audience `azp` is
    /// not checked: Google names the Android app there when the app asks for a token for its
    /// server (`aud` is then the server's client id).
    static func checkAudience(_ claims: [String: StrictJSON], configuration: IdentityProviderConfiguration) throws {
        let audiences: [String]
        switch claims["aud"] {
        case .string(let audience)?: audiences = [audience]
        case .array(let values)?:
            let strings = values.compactMap(\.string)
            audiences = strings.count == values.count ? strings : []
        default: audiences = []
        }
        guard !audiences.isEmpty, audiences.contains(where: configuration.audiences.contains) else {
            throw invalid("the ID token was issued for another application", reason: "ID_TOKEN_AUDIENCE")
        }
        if audiences.count > 1 {
            guard let party = claims["azp"]?.string, configuration.audiences.contains(party) else {
                throw invalid("the ID token's authorized party (azp) is not this application", reason: "ID_TOKEN_AUTHORIZED_PARTY")
            }
        }
    }

    /// `exp` and `iat` are required numbers, `nbf` an optional one; each within the clock skew,
    /// and the lifetime bounded.
    static func checkTimes(_ claims: [String: StrictJSON], now: TimeInterval) throws {
        guard let expiry = claims["exp"]?.number else {
            throw invalid("the ID token has no numeric expiry (exp)", reason: "ID_TOKEN_MALFORMED")
        }
        guard let issuedAt = claims["iat"]?.number else {
            throw invalid("the ID token has no numeric issue time (iat)", reason: "ID_TOKEN_MALFORMED")
        }
        guard expiry + clockSkew > now else { throw invalid("the ID token expired", reason: "ID_TOKEN_EXPIRED") }
        guard issuedAt - clockSkew <= now else {
            throw invalid("the ID token claims to be issued in the future", reason: "ID_TOKEN_ISSUED_IN_FUTURE")
        }
        guard expiry - issuedAt <= maximumLifetime else {
            throw invalid("the ID token claims a lifetime longer than a day", reason: "ID_TOKEN_LIFETIME")
        }
        if let notBefore = claims["nbf"] {
            guard let notBefore = notBefore.number else {
                throw invalid("the ID token's not-before (nbf) is not a number", reason: "ID_TOKEN_MALFORMED")
            }
            guard notBefore - clockSkew <= now else { throw invalid("the ID token is not valid yet", reason: "ID_TOKEN_NOT_YET_VALID") }
        }
    }

    static func invalid(_ message: String, reason: String) -> RPCError {
        RPCError(code: .unauthenticated, message: message, details: ErrorDetails(reason: reason, fields: ["field": "id_token.token"]))
    }
}

/// An RSA public key held as an OpenSSL EVP_PKEY.
public final class RSAPublicKey: @unchecked Sendable {
    // Immutable after init; OpenSSL allows concurrent verification with one EVP_PKEY.
    private let key: OpaquePointer

    public init?(modulus: [UInt8], exponent: [UInt8]) {
        guard modulus.count >= 256, let key = passion_rsa_public_key(modulus, modulus.count, exponent, exponent.count) else {
            return nil
        }
        self.key = key
    }

    deinit { EVP_PKEY_free(key) }

    /// RSASSA-PKCS1-v1_5 with SHA-256.
    public func verifySHA256(signature: [UInt8], message: [UInt8]) -> Bool {
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, EVP_sha256(), nil, key) == 1 else { return false }
        return EVP_DigestVerify(context, signature, signature.count, message, message.count) == 1
    }
}
