import COpenSSL
import Foundation
import PassionClient
import PassionIdentity
import PassionStore
import PassionTLS
import PassionTestSupport
import Testing
import PassionRPCServer

/// An OpenID provider for tests: an RSA key, its JWKS file, and RS256-signed ID tokens.
final class TestIssuer: @unchecked Sendable {
    // Used only to sign, one test at a time.
    private let key: OpaquePointer
    let kid: String
    let jwksPath: String

    init(kid: String = "test-key-1") throws {
        guard let key = passion_generate_rsa_key(2048) else { throw IdentityConfigurationError("RSA key generation failed") }
        self.key = key
        self.kid = kid
        var modulus = [UInt8](repeating: 0, count: 512)
        var exponent = [UInt8](repeating: 0, count: 16)
        let n = passion_rsa_component(key, "n", &modulus, 512)
        let e = passion_rsa_component(key, "e", &exponent, 16)
        let jwks = """
            {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "\(kid)",
                       "n": "\(Self.base64URL(modulus.prefix(Int(n))))", "e": "\(Self.base64URL(exponent.prefix(Int(e))))"}]}
            """
        jwksPath = NSTemporaryDirectory() + "passion-jwks-\(UUID().uuidString).json"
        try jwks.write(toFile: jwksPath, atomically: true, encoding: .utf8)
    }

    deinit {
        EVP_PKEY_free(key)
        try? FileManager.default.removeItem(atPath: jwksPath)
    }

    static func base64URL(_ bytes: some Collection<UInt8>) -> String { Crypto.base64URL(bytes) }

    /// A signed token with `claims` over sensible defaults.
    func token(_ claims: [String: Any] = [:], header: [String: Any]? = nil) throws -> String {
        var payload: [String: Any] = [
            "iss": "https://accounts.google.com", "aud": "passion-app", "sub": "google-123", "email": "Oidc.User@Example.com",
            "email_verified": true, "name": "Oidc User", "exp": Date().timeIntervalSince1970 + 600,
            "iat": Date().timeIntervalSince1970,
        ]
        for (key, value) in claims { payload[key] = value is NSNull ? nil : value }
        let head = header ?? ["alg": "RS256", "kid": kid, "typ": "JWT"]
        return try signed(
            header: String(decoding: try JSONSerialization.data(withJSONObject: head), as: UTF8.self),
            payload: String(decoding: try JSONSerialization.data(withJSONObject: payload), as: UTF8.self))
    }

    /// A token signed over exactly this header and payload text (for JSON no serializer writes,
    /// such as a key named twice).
    func signed(header: String? = nil, payload: String) throws -> String {
        let head = header ?? #"{"alg":"RS256","kid":"\#(kid)","typ":"JWT"}"#
        let signingInput = Self.base64URL(Array(head.utf8)) + "." + Self.base64URL(Array(payload.utf8))
        return signingInput + "." + Self.base64URL(try sign(Array(signingInput.utf8)))
    }

    private func sign(_ message: [UInt8]) throws -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { throw IdentityConfigurationError("no digest context") }
        defer { EVP_MD_CTX_free(context) }
        var length = 0
        guard EVP_DigestSignInit(context, nil, EVP_sha256(), nil, key) == 1,
            EVP_DigestSign(context, nil, &length, message, message.count) == 1
        else { throw IdentityConfigurationError("signing failed") }
        var signature = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSign(context, &signature, &length, message, message.count) == 1 else {
            throw IdentityConfigurationError("signing failed")
        }
        return Array(signature.prefix(length))
    }
}

@Suite("SignIn with OpenID Connect ID tokens, verified against a JWKS file")
struct IDTokenTests {
    @Test("a valid token signs in; every kind of bad token is refused with its reason and creates nothing")
    func tokens() async throws {
        let issuer = try TestIssuer()
        let stranger = try TestIssuer(kid: "test-key-1")  // same kid, different key: a forgery
        try await ServiceHarness.with(configure: {
            $0.identityProviders = [
                IdentityProviderConfiguration(
                    provider: "google", jwksPath: issuer.jwksPath, issuers: ["https://accounts.google.com"], audiences: ["passion-app"])
            ]
        }) { harness in
            func signIn(_ token: String, provider: IdentityProvider = .google) async throws -> SignInResponse {
                try await harness.connection.auth.signIn(options: ServiceHarness.service("gateway")) {
                    $0.idToken = IDToken.with {
                        $0.provider = provider
                        $0.token = token
                        $0.timeZone = "Asia/Tokyo"
                    }
                }
            }
            let cases: [(String, String)] = [
                (try issuer.token(["aud": "someone-else"]), "ID_TOKEN_AUDIENCE"),
                (try issuer.token(["iss": "https://evil.example.com"]), "ID_TOKEN_ISSUER"),
                (try issuer.token(["exp": Date().timeIntervalSince1970 - 3600]), "ID_TOKEN_EXPIRED"),
                (try issuer.token(["nbf": Date().timeIntervalSince1970 + 3600]), "ID_TOKEN_NOT_YET_VALID"),
                (try issuer.token(["sub": ""]), "ID_TOKEN_MALFORMED"),
                (try issuer.token(header: ["alg": "none", "kid": issuer.kid]), "ID_TOKEN_ALGORITHM"),
                (try issuer.token(header: ["alg": "HS256", "kid": issuer.kid]), "ID_TOKEN_ALGORITHM"),
                (try issuer.token(header: ["alg": "RS256", "kid": "rotated-away"]), "ID_TOKEN_KEY_UNKNOWN"),
                (try stranger.token(), "ID_TOKEN_SIGNATURE"),
                ("not.a.jwt", "ID_TOKEN_MALFORMED"),
                ("", "ID_TOKEN_MALFORMED"),
            ]
            let before = try await harness.snapshot()
            for (token, reason) in cases {
                let error = await expectRPCError(.unauthenticated) { try await signIn(token) }
                #expect(error?.details?.reason == reason)
            }
            // A tampered payload under a genuine signature.
            let genuine = try issuer.token()
            var parts = genuine.split(separator: ".").map(String.init)
            parts[1] = TestIssuer.base64URL(try JSONSerialization.data(withJSONObject: [
                "iss": "https://accounts.google.com", "aud": "passion-app", "sub": "admin", "email": "admin@example.com",
                "exp": Date().timeIntervalSince1970 + 600,
            ]))
            let tampered = await expectRPCError(.unauthenticated) { try await signIn(parts.joined(separator: ".")) }
            #expect(tampered?.details?.reason == "ID_TOKEN_SIGNATURE")
            // A provider without configuration.
            let unconfigured = await expectRPCError(.failedPrecondition) { try await signIn(genuine, provider: .azure) }
            #expect(unconfigured?.details?.reason == "PROVIDER_NOT_CONFIGURED")
            #expect(try await harness.snapshot() == before)

            let response = try await signIn(genuine)
            #expect(response.created)
            #expect(response.user.email == "oidc.user@example.com")
            #expect(response.user.provider == "google")
            #expect(response.user.timeZone == "Asia/Tokyo")
            #expect(try await harness.connection.users.me(MeRequest(), options: .session(response.sessionToken)).id == response.user.id)
        }
    }

    @Test("provider configuration: flags parse, bad JWKS files are clear errors")
    func configuration() throws {
        let google = try IdentityProviderConfiguration(parsing: "google:jwks=/etc/jwks.json,audience=app-1,audience=app-2")
        #expect(google.audiences == ["app-1", "app-2"])
        #expect(google.issuers.contains("https://accounts.google.com"))
        #expect(throws: IdentityConfigurationError.self) { try IdentityProviderConfiguration(parsing: "azure:jwks=/x,audience=a") }
        #expect(throws: IdentityConfigurationError.self) { try IdentityProviderConfiguration(parsing: "github:jwks=/x,audience=a") }
        #expect(throws: IdentityConfigurationError.self) { try IdentityProviderConfiguration(parsing: "google:audience=a") }
        let path = NSTemporaryDirectory() + "passion-bad-jwks-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try #"{"keys": []}"#.write(toFile: path, atomically: true, encoding: .utf8)
        let error = #expect(throws: IdentityConfigurationError.self) {
            try IDTokenVerifier([IdentityProviderConfiguration(provider: "google", jwksPath: path, issuers: ["x"], audiences: ["y"])])
        }
        #expect(error?.description.contains("no RS256 signing key") == true)
    }
}
