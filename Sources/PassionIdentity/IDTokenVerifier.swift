import COpenSSL
import Foundation
import PassionRPC
import PassionTLS

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
    public var name: String?
    public var picture: String?
}

/// Verifies RS256 ID tokens: signature against the provider's JWKS (read at start, no network),
/// issuer, audience, expiry and not-before with a minute of clock skew, and a verified email.
public struct IDTokenVerifier: Sendable {
    private let providers: [String: (configuration: IdentityProviderConfiguration, keys: [String: RSAPublicKey])]
    public static let clockSkew: TimeInterval = 60

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
            let header = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any],
            let claims = try? JSONSerialization.jsonObject(with: Data(payloadBytes)) as? [String: Any]
        else {
            throw Self.invalid("the ID token is not a JWT", reason: "ID_TOKEN_MALFORMED")
        }
        guard header["alg"] as? String == "RS256" else {
            throw Self.invalid("the ID token must be signed with RS256", reason: "ID_TOKEN_ALGORITHM")
        }
        guard let kid = header["kid"] as? String, let key = keys[kid] else {
            throw Self.invalid("the ID token's signing key is not in the configured JWKS", reason: "ID_TOKEN_KEY_UNKNOWN")
        }
        let signed = Array("\(parts[0]).\(parts[1])".utf8)
        guard key.verifySHA256(signature: signature, message: signed) else {
            throw Self.invalid("the ID token's signature does not verify", reason: "ID_TOKEN_SIGNATURE")
        }
        guard let issuer = claims["iss"] as? String, configuration.issuers.contains(issuer) else {
            throw Self.invalid("the ID token's issuer is not \(provider)'s", reason: "ID_TOKEN_ISSUER")
        }
        let audiences = (claims["aud"] as? String).map { [$0] } ?? (claims["aud"] as? [String]) ?? []
        guard audiences.contains(where: configuration.audiences.contains) else {
            throw Self.invalid("the ID token was issued for another application", reason: "ID_TOKEN_AUDIENCE")
        }
        guard let expiry = (claims["exp"] as? NSNumber)?.doubleValue else {
            throw Self.invalid("the ID token has no expiry", reason: "ID_TOKEN_MALFORMED")
        }
        guard expiry + Self.clockSkew > now.timeIntervalSince1970 else {
            throw Self.invalid("the ID token expired", reason: "ID_TOKEN_EXPIRED")
        }
        if let notBefore = (claims["nbf"] as? NSNumber)?.doubleValue, notBefore - Self.clockSkew > now.timeIntervalSince1970 {
            throw Self.invalid("the ID token is not valid yet", reason: "ID_TOKEN_NOT_YET_VALID")
        }
        guard let subject = claims["sub"] as? String, !subject.isEmpty else {
            throw Self.invalid("the ID token names no subject", reason: "ID_TOKEN_MALFORMED")
        }
        guard let email = claims["email"] as? String ?? claims["preferred_username"] as? String, email.contains("@") else {
            throw Self.invalid("the ID token carries no email", reason: "ID_TOKEN_NO_EMAIL")
        }
        if let verified = claims["email_verified"], (verified as? Bool ?? (verified as? String == "true")) == false {
            throw Self.invalid("the ID token's email is not verified", reason: "ID_TOKEN_EMAIL_UNVERIFIED")
        }
        return VerifiedClaims(
            provider: provider, subject: subject, email: email, name: claims["name"] as? String,
            picture: claims["picture"] as? String)
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
