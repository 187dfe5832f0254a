import Foundation
import PassionRPCServer
import PassionTLS
import PassionJSON

/// An internal caller the server knows: its name, how it proves itself (a service key whose
/// SHA-256 is configured, or an mTLS client certificate name) and its scopes.
public struct ServiceAccount: Sendable, Hashable {
    public var name: String
    public var keySHA256: [UInt8]?
    /// A subjectAltName of the account's client certificate (a DNS name, or a URI such as a
    /// SPIFFE id), matched exactly; or its common name where the server allows that.
    public var certificateName: String?
    public var scopes: Set<String>
    /// Its own rate limit (a load generator needs a larger one), `.unlimited`, or nil for the
    /// server's service class.
    public var rate: ServiceRate?

    public init(
        name: String, keySHA256: [UInt8]? = nil, certificateName: String? = nil, scopes: Set<String>, rate: ServiceRate? = nil
    ) {
        self.name = name
        self.keySHA256 = keySHA256
        self.certificateName = certificateName
        self.scopes = scopes
        self.rate = rate
    }

    /// The SHA-256 under which a key is configured.
    public static func keyHash(_ key: String) -> [UInt8] { Crypto.sha256(key) }
}

/// A service account's own rate limit.
public enum ServiceRate: Sendable, Hashable {
    case limited(RateLimit)
    case unlimited

    /// `unlimited`, `RATE` or `RATE/BURST`.
    public init?(parsing text: String) {
        if text == "unlimited" {
            self = .unlimited
        } else if let limit = RateLimit(parsing: text) {
            self = .limited(limit)
        } else {
            return nil
        }
    }
}

/// A configuration file that cannot be used, with what is wrong and where.
public struct IdentityConfigurationError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The configured service accounts, looked up by key hash or certificate name.
public struct ServiceRegistry: Sendable {
    public let accounts: [ServiceAccount]
    private let byKeyHash: [[UInt8]: ServiceAccount]
    private let byCertificate: [String: ServiceAccount]
    private let byName: [String: ServiceAccount]

    public init(accounts: [ServiceAccount]) throws {
        var byKeyHash: [[UInt8]: ServiceAccount] = [:]
        var byCertificate: [String: ServiceAccount] = [:]
        var names = Set<String>()
        // A credential shared by two accounts would silently take the scopes of whichever came
        // last; the configuration is refused instead, naming both.
        for account in accounts {
            guard names.insert(account.name).inserted else {
                throw IdentityConfigurationError("service \(account.name) is configured twice")
            }
            if let hash = account.keySHA256 {
                if let other = byKeyHash[hash] {
                    throw IdentityConfigurationError("services \(other.name) and \(account.name) have the same key_sha256")
                }
                byKeyHash[hash] = account
            }
            if let name = account.certificateName {
                if let other = byCertificate[name] {
                    throw IdentityConfigurationError("services \(other.name) and \(account.name) have the same certificate_name \"\(name)\"")
                }
                byCertificate[name] = account
            }
        }
        self.accounts = accounts
        self.byKeyHash = byKeyHash
        self.byCertificate = byCertificate
        self.byName = Dictionary(uniqueKeysWithValues: accounts.map { ($0.name, $0) })
    }

    public static let empty: ServiceRegistry = {
        do { return try ServiceRegistry(accounts: []) } catch { fatalError("an empty registry is always valid") }
    }()

    /// The account whose key this is.
    public func account(forKey key: String) -> ServiceAccount? {
        byKeyHash[Crypto.sha256(key)]
    }

    /// The account called `name`.
    public func account(named name: String) -> ServiceAccount? { byName[name] }

    /// The account of a verified client certificate: the one whose `certificate_name` is among
    /// the certificate's DNS and URI subjectAltNames (or, only with `commonNameFallback` and no
    /// subjectAltName extension, its common name). Nil when none matches; a certificate naming
    /// two accounts, or too many names to read, is refused (without naming accounts to the peer).
    public func account(forCertificate certificate: PeerCertificateNames, commonNameFallback: Bool) throws -> ServiceAccount? {
        let matched = certificate.matchableNames(commonNameFallback: commonNameFallback).compactMap { byCertificate[$0] }
        guard !certificate.tooManyNames, matched.allSatisfy({ $0.name == matched.first?.name }) else {
            throw RPCError(
                code: .unauthenticated, message: "the client certificate does not name exactly one service account",
                details: ErrorDetails(reason: "CERTIFICATE_AMBIGUOUS"))
        }
        return matched.first
    }

    /// Reads a JSON file:
    /// `{"services": [{"name": "gateway", "key_sha256": "<64 hex>", "certificate_name": "gw.internal",
    /// "scopes": ["auth:signin"]}]}` — each entry needs a key hash, a certificate name or both.
    public static func load(path: String) throws -> [ServiceAccount] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw IdentityConfigurationError("cannot read service accounts file \(path): \(error.localizedDescription)")
        }
        struct File: Decodable {
            struct Entry: Decodable {
                var name: String
                var key_sha256: String?
                var certificate_name: String?
                var scopes: [String]
                var rate: String?
            }
            var services: [Entry]
        }
        // JSONDecoder keeps one of two equal keys silently; a credential file names none twice.
        do {
            _ = try StrictJSON.parse(data)
        } catch {
            throw IdentityConfigurationError("\(path) is not valid JSON: \(error)")
        }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch {
            throw IdentityConfigurationError("\(path) is not a service accounts file ({\"services\": [...]}): \(error)")
        }
        return try file.services.enumerated().map { index, entry in
            let place = "\(path): services[\(index)]"
            guard entry.name.range(of: #"^[a-z][a-z0-9-]{0,62}$"#, options: .regularExpression) != nil else {
                throw IdentityConfigurationError("\(place): name must be lower-case letters, digits and '-', not \"\(entry.name)\"")
            }
            var hash: [UInt8]?
            if let text = entry.key_sha256 {
                guard text.count == 64, let bytes = Crypto.bytes(hex: text) else {
                    throw IdentityConfigurationError("\(place): key_sha256 must be 64 hex digits (sha256sum of the key)")
                }
                hash = bytes
            }
            if let name = entry.certificate_name {
                guard !name.isEmpty, name.utf8.count <= 1000, name.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
                    throw IdentityConfigurationError("\(place): certificate_name must be a DNS name or URI in printable ASCII, not \"\(name)\"")
                }
            }
            guard hash != nil || entry.certificate_name != nil else {
                throw IdentityConfigurationError("\(place): needs key_sha256, certificate_name or both")
            }
            for scope in entry.scopes where !Self.isValidScope(scope) {
                throw IdentityConfigurationError("\(place): scope \"\(scope)\" is not resource:verb or admin")
            }
            var rate: ServiceRate?
            if let text = entry.rate {
                guard let parsed = ServiceRate(parsing: text) else {
                    throw IdentityConfigurationError("\(place): rate must be RATE, RATE/BURST or unlimited, not \"\(text)\"")
                }
                rate = parsed
            }
            return ServiceAccount(
                name: entry.name, keySHA256: hash, certificateName: entry.certificate_name, scopes: Set(entry.scopes), rate: rate)
        }
    }

    static func isValidScope(_ scope: String) -> Bool {
        scope == Principal.adminScope || scope.range(of: #"^[a-z][a-z_]*:[a-z][a-z_]*$"#, options: .regularExpression) != nil
    }
}

/// The service key written for development on the embedded default, so a new user can sign
/// users in and call everything from the CLI, and benchmarks can load the server. It holds the
/// `admin` scope and has no rate limit.
public enum DevelopmentServiceKey {
    public static let serviceName = "dev"

    public static func path(dataDirectory: String) -> String { dataDirectory + "/dev-service-key" }

    /// Reads the key, creating it (mode 0600) on first run.
    public static func ensure(dataDirectory: String) throws -> ServiceAccount {
        let path = path(dataDirectory: dataDirectory)
        if let existing = try? String(contentsOfFile: path, encoding: .utf8) {
            let key = existing.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !key.isEmpty else { throw IdentityConfigurationError("\(path) is empty: delete it to get a new key") }
            return account(key: key)
        }
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        let key = generateKey()
        // Created with 0600 from the start: the key is never readable by others, not even briefly.
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw IdentityConfigurationError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let line = Array((key + "\n").utf8)
        guard write(descriptor, line, line.count) == line.count else {
            throw IdentityConfigurationError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        return account(key: key)
    }

    /// A new random service key: `psk_` and 256 random bits, base64url.
    public static func generateKey() -> String { "psk_" + Crypto.base64URL(Crypto.randomBytes(32)) }

    private static func account(key: String) -> ServiceAccount {
        ServiceAccount(name: serviceName, keySHA256: Crypto.sha256(key), scopes: [Principal.adminScope], rate: .unlimited)
    }
}
