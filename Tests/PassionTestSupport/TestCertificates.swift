import Foundation
import PassionTLS
import Synchronization

/// Certificates for tests, made once per test process in a temporary directory.
public struct TestCertificates: Sendable {
    public let directory: String
    public var caPath: String { directory + "/ca.pem" }
    public var caKeyPath: String { directory + "/ca-key.pem" }
    public var serverCertificate: String { directory + "/server.pem" }
    public var serverKey: String { directory + "/server-key.pem" }
    public var clientCertificate: String { directory + "/client.pem" }
    public var clientKey: String { directory + "/client-key.pem" }
    public var expiredCertificate: String { directory + "/expired.pem" }
    public var expiredKey: String { directory + "/expired-key.pem" }
    /// A CA that signed nothing the server presents.
    public var otherCAPath: String { directory + "/other-ca.pem" }

    private static let cache = Mutex<TestCertificates?>(nil)

    public static func shared() throws -> TestCertificates {
        try cache.withLock { cached in
            if let cached { return cached }
            let made = try make()
            cached = made
            return made
        }
    }

    /// A client certificate from the test CA with the given names, written next to the others;
    /// returns the certificate and key paths.
    public func issueClient(
        commonName: String, dnsNames: [String] = [], ipAddresses: [String] = [], uris: [String] = []
    ) throws -> (certificate: String, key: String) {
        let authority = CertificateAuthority(identity: PEMIdentity(
            certificatePEM: try String(contentsOfFile: caPath, encoding: .utf8),
            privateKeyPEM: try String(contentsOfFile: caKeyPath, encoding: .utf8)))
        let issued = try authority.issue(commonName: commonName, dnsNames: dnsNames, ipAddresses: ipAddresses, uris: uris, client: true)
        let base = directory + "/client-\(UUID().uuidString)"
        try issued.certificatePEM.write(toFile: base + ".pem", atomically: true, encoding: .utf8)
        try issued.privateKeyPEM.write(toFile: base + "-key.pem", atomically: true, encoding: .utf8)
        return (base + ".pem", base + "-key.pem")
    }

    private static func make() throws -> TestCertificates {
        let directory = NSTemporaryDirectory() + "passion-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let certificates = TestCertificates(directory: directory)
        let authority = try CertificateAuthority.create(commonName: "passion test CA")
        let server = try authority.issue(commonName: "passion-server", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        let client = try authority.issue(commonName: "test-client", dnsNames: ["test-client"], client: true)
        let expired = try authority.issue(
            commonName: "expired", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], validFrom: -7200, validUntil: -3600)
        let other = try CertificateAuthority.create(commonName: "unrelated CA")
        let files: [(String, String)] = [
            (certificates.caPath, authority.identity.certificatePEM), (certificates.caKeyPath, authority.identity.privateKeyPEM),
            (certificates.serverCertificate, server.certificatePEM), (certificates.serverKey, server.privateKeyPEM),
            (certificates.clientCertificate, client.certificatePEM), (certificates.clientKey, client.privateKeyPEM),
            (certificates.expiredCertificate, expired.certificatePEM), (certificates.expiredKey, expired.privateKeyPEM),
            (certificates.otherCAPath, other.identity.certificatePEM),
        ]
        for (path, text) in files { try text.write(toFile: path, atomically: true, encoding: .utf8) }
        return certificates
    }
}
