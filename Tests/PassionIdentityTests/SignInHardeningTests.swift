import Foundation
import PassionClient
import PassionIdentity
import PassionStore
import PassionTLS
import PassionTestSupport
import Testing
import PassionJSON
import PassionRPCServer

/// Account matching and linking, ID token edge cases, and the names mTLS trusts: each test
/// makes its own tokens (a throwaway JWKS) or certificates (the test CA) and shows the attack
/// of the sign-in hardening issue failing.
@Suite("Sign-in hardening: no takeover through ID tokens, no name confusion in mTLS")
struct SignInHardeningTests {
    static let azureIssuer = "https://login.microsoftonline.com/test-tenant/v2.0"

    static func providers(google: TestIssuer, azure: TestIssuer) -> (inout IdentityConfiguration) -> Void {
        { configuration in
            configuration.identityProviders = [
                IdentityProviderConfiguration(
                    provider: "google", jwksPath: google.jwksPath, issuers: ["https://accounts.google.com"],
                    audiences: ["passion-app", "passion-android"]),
                IdentityProviderConfiguration(
                    provider: "azure", jwksPath: azure.jwksPath, issuers: [azureIssuer], audiences: ["passion-app"]),
            ]
        }
    }

    static func signIn(_ harness: ServiceHarness, _ token: String, provider: IdentityProvider = .google) async throws -> SignInResponse {
        try await harness.connection.auth.signIn(options: ServiceHarness.service("gateway")) {
            $0.idToken = IDToken.with {
                $0.provider = provider
                $0.token = token
            }
        }
    }

    static func attempt<T>(_ body: () async throws -> T) async -> Result<T, any Error> {
        do { return .success(try await body()) } catch { return .failure(error) }
    }

    /// An account an operator made (no sign-in identity yet) with some progress on it.
    static func victim(_ harness: ServiceHarness, email: String) async throws -> String {
        let id = try #require(try await harness.query("INSERT INTO users (email) VALUES (\(email)) RETURNING id").first?.require("id", as: UUID.self))
        _ = try await harness.connection.progress.awardXP(options: ServiceHarness.service("progress")) {
            $0.userID = id.uuidString
            $0.points = 500
            $0.reason = "grant"
            $0.idempotencyKey = "victim-bonus"
        }
        return id.uuidString.lowercased()
    }

    @Test("an email the provider does not vouch for never links to an account: missing email_verified, preferred_username, Azure's email")
    func unverifiedEmailNeverLinks() async throws {
        let google = try TestIssuer()
        let azure = try TestIssuer(kid: "azure-key")
        try await ServiceHarness.with(configure: Self.providers(google: google, azure: azure)) { harness in
            let victim = try await Self.victim(harness, email: "victim@example.com")
            let victimID = try #require(UUID(uuidString: victim))
            let victimState: SQL = "SELECT coalesce(oauth_provider, '-') || updated_at::text AS state FROM users WHERE id = \(victimID)"
            let victimRow = try await harness.query(victimState).first?.require("state", as: String.self)
            let attempts: [(String, IdentityProvider)] = [
                (try google.token(["sub": "attacker-1", "email": "victim@example.com", "email_verified": NSNull()]), .google),
                (try google.token(["sub": "attacker-2", "email": "Victim@Example.com", "email_verified": false]), .google),
                (try google.token(["sub": "attacker-3", "email": "victim@example.com", "email_verified": "yes"]), .google),
                (try azure.token(["iss": Self.azureIssuer, "sub": "attacker-4", "email": "victim@example.com", "email_verified": true]), .azure),
                (try azure.token(["iss": Self.azureIssuer, "sub": "attacker-5", "email": "victim@example.com", "xms_edov": "true"]), .azure),
            ]
            for (token, provider) in attempts {
                let response = try await Self.signIn(harness, token, provider: provider)
                #expect(response.created, "an unverified email reached an existing account")
                #expect(response.user.id != victim)
                #expect(!response.user.emailVerified)
                let me = try await harness.connection.users.me(MeRequest(), options: .session(response.sessionToken))
                #expect(me.id != victim)
                let progress = try await harness.connection.progress.getProgress(GetProgressRequest(), options: .session(response.sessionToken))
                #expect(progress.totalXp == 0)
            }
            // `preferred_username` is a handle the user sets, never an address.
            let handle = await expectRPCError(.unauthenticated) {
                try await Self.signIn(harness, try google.token(["sub": "attacker-5", "email": NSNull(), "preferred_username": "victim@example.com"]))
            }
            #expect(handle?.details?.reason == "ID_TOKEN_NO_EMAIL")
            #expect(try await harness.query(victimState).first?.require("state", as: String.self) == victimRow)

            // The provider's word links: Google's email_verified, Azure's xms_edov.
            let owner = try await Self.signIn(harness, try google.token(["sub": "owner", "email": "victim@example.com"]))
            #expect(!owner.created && owner.user.id == victim && owner.user.emailVerified)
            let azureOwner = try await Self.victim(harness, email: "azure-owner@example.com")
            let linked = try await Self.signIn(
                harness, try azure.token(["iss": Self.azureIssuer, "sub": "a-owner", "email": "azure-owner@example.com", "xms_edov": true]),
                provider: .azure)
            #expect(!linked.created && linked.user.id == azureOwner)
        }
    }

    @Test("an unverified address cannot be squatted: its real owner's verified sign-in still gets an account")
    func noSquatting() async throws {
        let google = try TestIssuer()
        let azure = try TestIssuer(kid: "azure-key")
        try await ServiceHarness.with(configure: Self.providers(google: google, azure: azure)) { harness in
            let squatter = try await Self.signIn(
                harness, try azure.token(["iss": Self.azureIssuer, "sub": "squatter", "email": "ceo@example.com"]), provider: .azure)
            #expect(squatter.created && !squatter.user.emailVerified)
            let owner = try await Self.signIn(harness, try google.token(["sub": "real-ceo", "email": "ceo@example.com"]))
            #expect(owner.created && owner.user.emailVerified && owner.user.id != squatter.user.id)
            // The squatter signing in again neither takes the address nor the owner's account.
            let again = try await Self.signIn(
                harness, try azure.token(["iss": Self.azureIssuer, "sub": "squatter", "email": "ceo@example.com"]), provider: .azure)
            #expect(again.user.id == squatter.user.id && !again.user.emailVerified)
            // The gateway must say the provider vouched; by default it did not.
            let gateway = try await harness.connection.auth.signIn(options: ServiceHarness.service("gateway")) {
                $0.identity = VerifiedIdentity.with {
                    $0.provider = .azure
                    $0.providerUserID = "gateway-squatter"
                    $0.email = "ceo@example.com"
                }
            }
            #expect(gateway.created && gateway.user.id != owner.user.id)
        }
    }

    @Test("a known identity's email follows the provider only when vouched for and free")
    func emailChanges() async throws {
        let google = try TestIssuer()
        let azure = try TestIssuer(kid: "azure-key")
        try await ServiceHarness.with(configure: Self.providers(google: google, azure: azure)) { harness in
            let taken = try await harness.signIn("taken@example.com", subject: "holder")
            let user = try await Self.signIn(harness, try google.token(["sub": "mover", "email": "mover@example.com"]))
            // Verified and free: taken over.
            let moved = try await Self.signIn(harness, try google.token(["sub": "mover", "email": "moved@example.com"]))
            #expect(moved.user.id == user.user.id && moved.user.email == "moved@example.com" && moved.user.emailVerified)
            // Unverified: a verified address is not replaced by it.
            let unverified = try await Self.signIn(
                harness, try google.token(["sub": "mover", "email": "whatever@example.com", "email_verified": false]))
            #expect(unverified.user.email == "moved@example.com" && unverified.user.emailVerified)
            // Verified but held by another account: the sign-in works and keeps the old address.
            let collision = try await Self.signIn(harness, try google.token(["sub": "mover", "email": "taken@example.com"]))
            #expect(collision.user.id == user.user.id && collision.user.email == "moved@example.com")
            let holder = try await harness.connection.users.me(MeRequest(), options: .session(taken.token))
            #expect(holder.email == "taken@example.com")
        }
    }

    @Test("first sign-ins racing for one address or one identity: one account, clean refusals, no database names")
    func concurrentSignIns() async throws {
        let google = try TestIssuer()
        let azure = try TestIssuer(kid: "azure-key")
        try await ServiceHarness.with(configure: Self.providers(google: google, azure: azure)) { harness in
            let tokens = try (0..<8).map { try google.token(["sub": "racer-\($0)", "email": "race@example.com"]) }
            let outcomes = await withTaskGroup(of: Result<SignInResponse, any Error>.self) { group in
                for token in tokens { group.addTask { await Self.attempt { try await Self.signIn(harness, token) } } }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let accounts = Set(outcomes.compactMap { try? $0.get().user.id })
            #expect(accounts.count == 1, "one address, one account")
            for case .failure(let error) in outcomes {
                let rpc = error as? RPCError
                #expect(rpc?.details?.reason == "EMAIL_LINKED_TO_OTHER_IDENTITY", "\(error)")
                #expect(rpc.map { !"\($0)".contains("users_") && $0.details?.fields["sqlstate"] == nil } == true, "\(error)")
            }
            let same = try google.token(["sub": "twin", "email": "twin@example.com"])
            let twins = await withTaskGroup(of: Result<SignInResponse, any Error>.self) { group in
                for _ in 0..<8 { group.addTask { await Self.attempt { try await Self.signIn(harness, same) } } }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(twins.compactMap { try? $0.get().user.id }).count == 1)
            #expect(twins.allSatisfy { (try? $0.get()) != nil }, "\(twins)")
        }
    }

    @Test("a NUL or control character cannot make two subjects or emails one: refused before the database cuts it")
    func controlCharacters() async throws {
        let google = try TestIssuer()
        let azure = try TestIssuer(kid: "azure-key")
        try await ServiceHarness.with(configure: Self.providers(google: google, azure: azure)) { harness in
            let victim = try await harness.signIn("nul@example.com", subject: "victim")
            let before = try await harness.snapshot()
            let token = await expectRPCError(.unauthenticated) {
                try await Self.signIn(harness, try google.token(["sub": "victim\u{0}x", "email": "other@example.com"]))
            }
            #expect(token?.details?.reason == "ID_TOKEN_MALFORMED")
            for (subject, email, field) in [("victim\u{0}x", "a@example.com", "identity.provider_user_id"),
                                            ("sub-ok", "nul@example.com\u{0}x", "identity.email")] {
                let error = await expectRPCError(.invalidArgument) {
                    try await harness.connection.auth.signIn(options: ServiceHarness.service("gateway")) {
                        $0.identity = VerifiedIdentity.with {
                            $0.provider = .google
                            $0.providerUserID = subject
                            $0.email = email
                            $0.emailVerified = true
                        }
                    }
                }
                #expect(error?.details?.fields["field"] == field)
            }
            // Any text a handler does not check: the store refuses a NUL rather than cut it.
            let profile = await expectRPCError(.invalidArgument) {
                try await harness.connection.users.updateProfile(options: .session(victim.token)) {
                    $0.displayName = "Ada\u{0}Lovelace"
                    $0.updateMask.paths = ["display_name"]
                }
            }
            #expect(profile != nil)
            #expect(try await harness.snapshot() == before)
        }
    }

    @Test("subjects longer than 255 characters are refused, never cut to one account")
    func longSubjects() async throws {
        let google = try TestIssuer()
        let azure = try TestIssuer(kid: "azure-key")
        try await ServiceHarness.with(configure: Self.providers(google: google, azure: azure)) { harness in
            let stem = String(repeating: "s", count: 255)
            let before = try await harness.snapshot()
            for (suffix, email) in [("A", "first@example.com"), ("B", "second@example.com")] {
                let error = await expectRPCError(.unauthenticated) {
                    try await Self.signIn(harness, try google.token(["sub": stem + suffix, "email": email]))
                }
                #expect(error?.details?.reason == "ID_TOKEN_SUBJECT_TOO_LONG")
            }
            #expect(try await harness.snapshot() == before)
            let exact = try await Self.signIn(harness, try google.token(["sub": stem, "email": "exact@example.com"]))
            #expect(exact.created)
        }
    }

    @Test("audiences, times, headers and duplicate keys: each refused with its reason, nothing created")
    func claimEdges() async throws {
        let google = try TestIssuer()
        let azure = try TestIssuer(kid: "azure-key")
        try await ServiceHarness.with(configure: Self.providers(google: google, azure: azure)) { harness in
            let now = Date().timeIntervalSince1970
            let header = #"{"alg":"RS256","kid":"\#(google.kid)"}"#
            let cases: [(String, String)] = [
                (try google.token(["aud": ["passion-app", "someone-else"]]), "ID_TOKEN_AUTHORIZED_PARTY"),
                (try google.token(["aud": ["passion-app", "someone-else"], "azp": "someone-else"]), "ID_TOKEN_AUTHORIZED_PARTY"),
                (try google.token(["aud": ["passion-app", 7]]), "ID_TOKEN_AUDIENCE"),
                (try google.token(["iat": now + 3600, "exp": now + 4200]), "ID_TOKEN_ISSUED_IN_FUTURE"),
                (try google.token(["iat": now - 60, "exp": now + 100 * 365 * 86_400]), "ID_TOKEN_LIFETIME"),
                (try google.token(["iat": NSNull()]), "ID_TOKEN_MALFORMED"),
                (try google.token(["iat": "\(now)"]), "ID_TOKEN_MALFORMED"),
                (try google.token(["nbf": "soon"]), "ID_TOKEN_MALFORMED"),
                (try google.token(["exp": true]), "ID_TOKEN_MALFORMED"),
                (try google.token(header: ["alg": "RS256", "kid": google.kid, "crit": ["exp"], "exp": now + 60]), "ID_TOKEN_CRITICAL_HEADER"),
                (try google.signed(payload: """
                    {"iss":"https://accounts.google.com","aud":"passion-app","sub":"dup","email":"victim@example.com",
                     "email":"attacker@example.com","email_verified":true,"exp":\(now + 600),"iat":\(now)}
                    """), "ID_TOKEN_MALFORMED"),
                (try google.signed(payload: """
                    {"iss":"https://accounts.google.com","aud":"passion-app","sub":"dup","email":"a@example.com",
                     "email_verified":true,"exp":\(now + 600),"iat":\(now),"\\u0073ub":"admin"}
                    """), "ID_TOKEN_MALFORMED"),
                (try google.signed(header: #"{"alg":"RS256","alg":"none","kid":"\#(google.kid)"}"#, payload: "{}"), "ID_TOKEN_MALFORMED"),
                (try google.signed(header: header, payload: #"{"iss":"https://accounts.google.com"} trailing"#), "ID_TOKEN_MALFORMED"),
            ]
            let before = try await harness.snapshot()
            for (token, reason) in cases {
                let error = await expectRPCError(.unauthenticated) { try await Self.signIn(harness, token) }
                #expect(error?.details?.reason == reason, "\(String(describing: error))")
            }
            #expect(try await harness.snapshot() == before)
            // Several audiences with our client as the authorized party are fine, and so is
            // Google's Android pattern: our server's client id as aud, the app's as azp.
            let several = try await Self.signIn(
                harness, try google.token(["sub": "several", "email": "several@example.com", "aud": ["passion-app", "x"], "azp": "passion-app"]))
            #expect(several.created)
            let android = try await Self.signIn(
                harness, try google.token(["sub": "android", "email": "android@example.com", "azp": "some-android-client"]))
            #expect(android.created)
        }
    }

    @Test("the strict JSON parser refuses what Foundation's would let through")
    func strictJSON() throws {
        #expect(try StrictJSON.parse(Array(#"{"a":[1,2.5e3,true,null,"\u00e9\ud83d\ude00"]}"#.utf8))
            == .object(["a": .array([.number(1), .number(2500), .bool(true), .null, .string("é😀")])]))
        for text in [
            #"{"a":1,"a":2}"#, #"{"a":1,"\u0061":2}"#, #"{"a":01}"#, #"{"a":1,}"#, #"{"a":"\ud800"}"#, #"{"a":"\udc00"}"#, "[1] 2",
            #"{"a":"#, "{\"a\":\"\u{01}\"}", #"{"a":1e999}"#, #"{"a":tru}"#,
        ] {
            #expect(throws: StrictJSON.ParseError.self, "\(text)") { try StrictJSON.parse(Array(text.utf8)) }
        }
        let deep = String(repeating: "[", count: 40) + String(repeating: "]", count: 40)
        #expect(throws: StrictJSON.ParseError.self) { try StrictJSON.parse(Array(deep.utf8)) }
        // Bytes that are not UTF-8: a lone continuation byte, an overlong "/", a surrogate.
        for bytes: [UInt8] in [[0x22, 0x80, 0x22], [0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22]] {
            #expect(throws: StrictJSON.ParseError.self, "\(bytes)") { try StrictJSON.parse(bytes) }
        }
    }

    @Test("mTLS names come from the subjectAltName; the common name only when a flag allows it and the certificate has no SAN")
    func certificateNames() async throws {
        let accounts: (inout IdentityConfiguration) -> Void = { configuration in
            var all = configuration.services.accounts
            all.append(ServiceAccount(name: "game-server", certificateName: "game-server.internal", scopes: ["users:read"]))
            all.append(ServiceAccount(name: "worker", certificateName: "spiffe://passion.test/worker", scopes: ["users:read"]))
            all.append(ServiceAccount(name: "billing", certificateName: "billing.internal", scopes: ["users:read"]))
            do {
                configuration.services = try ServiceRegistry(accounts: all)
            } catch {
                Issue.record("registry: \(error)")
            }
        }
        let certificates = try TestCertificates.shared()
        let cnOnly = try certificates.issueClient(commonName: "game-server.internal")
        let cases: [(name: String, certificate: (certificate: String, key: String), fallbackOff: String?, fallbackOn: String?)] = [
            ("CN of an account, SAN of none", try certificates.issueClient(commonName: "game-server.internal", dnsNames: ["printer.internal"]),
             nil, nil),
            ("SAN DNS of an account", try certificates.issueClient(commonName: "anything", dnsNames: ["game-server.internal"]),
             "game-server", "game-server"),
            ("SAN URI of an account", try certificates.issueClient(commonName: "anything", uris: ["spiffe://passion.test/worker"]),
             "worker", "worker"),
            ("CN only", cnOnly, nil, "game-server"),
            ("CN of an account, only an IP SAN", try certificates.issueClient(commonName: "game-server.internal", ipAddresses: ["10.0.0.7"]),
             nil, nil),
            ("two accounts' SANs", try certificates.issueClient(commonName: "x", dnsNames: ["game-server.internal", "billing.internal"]),
             "CERTIFICATE_AMBIGUOUS", "CERTIFICATE_AMBIGUOUS"),
        ]
        for fallback in [false, true] {
            try await ServiceHarness.with(mutualTLS: true, configure: { configuration in
                accounts(&configuration)
                configuration.certificateCommonNameFallback = fallback
            }) { harness in
                let user = try await harness.signIn()
                for (name, files, off, on) in cases {
                    let expected = fallback ? on : off
                    let connection = try await ClientConnection.connect(
                        harness.server.clientConfiguration(certificate: files.certificate, key: files.key))
                    defer { Task { await connection.close() } }
                    let call = { try await connection.users.getUser(GetUserRequest.with { $0.userID = user.id }) }
                    switch expected {
                    case nil:
                        let error = await expectRPCError(.unauthenticated) { try await call() }
                        #expect(error?.details?.reason == "CREDENTIAL_REQUIRED", "\(name), fallback \(fallback)")
                    case "CERTIFICATE_AMBIGUOUS":
                        let error = await expectRPCError(.unauthenticated) { try await call() }
                        #expect(error?.details?.reason == "CERTIFICATE_AMBIGUOUS", "\(name), fallback \(fallback)")
                    case let account?:
                        #expect(try await call().id == user.id, "\(name), fallback \(fallback)")
                        // A method beyond the account's scope is refused and audited under its name.
                        await expectRPCError(.permissionDenied) {
                            try await connection.users.restoreUser(RestoreUserRequest.with { $0.userID = user.id })
                        }
                        let row = try #require(try await harness.auditRows(action: "auth.denied").first)
                        #expect(try row.require("principal", as: String.self) == "service:\(account)", "\(name)")
                    }
                }
            }
        }
    }

    @Test("a malformed as-user from a service with a valid certificate is audited against that service, not as anonymous")
    func malformedAsUserAudit() async throws {
        try await ServiceHarness.with(mutualTLS: true) { harness in
            var options = CallOptions()
            options.metadata.add("as-user", "not-a-uuid")
            let error = await expectRPCError(.invalidArgument) { try await harness.connection.users.me(MeRequest(), options: options) }
            #expect(error?.details?.reason == "AS_USER_MALFORMED")
            let row = try #require(try await harness.auditRows(action: "auth.denied").first)
            #expect(try row.require("principal", as: String.self) == "service:certified")
            #expect(try row.require("status", as: String.self) == "failure")
        }
    }
}
