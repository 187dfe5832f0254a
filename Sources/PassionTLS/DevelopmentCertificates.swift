import Foundation

/// The certificates a server uses when none are configured: a private CA and a server
/// certificate under `<data-dir>/tls/`, made on first run and reused after.
///
/// Clients trust `ca.pem` (the `passion` CLI finds it in `./.passion/tls/` by itself).
public struct DevelopmentCertificates: Sendable {
    public let directory: String
    public var caPath: String { directory + "/ca.pem" }
    public var caKeyPath: String { directory + "/ca-key.pem" }
    public var certificatePath: String { directory + "/server.pem" }
    public var privateKeyPath: String { directory + "/server-key.pem" }

    public init(dataDirectory: String) {
        self.directory = dataDirectory + "/tls"
    }

    /// How long a server certificate is issued for, and how little may be left before the next
    /// start renews it: short-lived, as browsers now require of public certificates.
    public static let lifetimeDays = 90
    public static let renewWithinDays = 30

    /// Creates whatever is missing, and a new server certificate when the one there expires within
    /// 30 days. The server certificate names `localhost`, `127.0.0.1`, `::1` and `host`.
    public func ensure(host: String) throws {
        let files = FileManager.default
        try files.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let authority: CertificateAuthority
        if files.fileExists(atPath: caPath), files.fileExists(atPath: caKeyPath) {
            authority = CertificateAuthority(identity: PEMIdentity(
                certificatePEM: try String(contentsOfFile: caPath, encoding: .utf8),
                privateKeyPEM: try String(contentsOfFile: caKeyPath, encoding: .utf8)))
        } else {
            authority = try CertificateAuthority.create()
            try write(authority.identity.privateKeyPEM, to: caKeyPath, secret: true)
            try write(authority.identity.certificatePEM, to: caPath, secret: false)
            try? files.removeItem(atPath: certificatePath)
        }
        if files.fileExists(atPath: certificatePath), files.fileExists(atPath: privateKeyPath) {
            let pem = try String(contentsOfFile: certificatePath, encoding: .utf8)
            guard try CertificateAuthority.secondsUntilExpiry(certificatePEM: pem) < Self.renewWithinDays * 86_400 else { return }
        }
        var dnsNames = ["localhost"]
        var ipAddresses = ["127.0.0.1", "::1"]
        let isIP = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
        if isIP {
            if !ipAddresses.contains(host), host != "0.0.0.0", host != "::" { ipAddresses.append(host) }
        } else if host != "localhost" {
            dnsNames.append(host)
        }
        let server = try authority.issue(
            commonName: "passion-server", dnsNames: dnsNames, ipAddresses: ipAddresses, validUntil: Self.lifetimeDays * 86_400)
        try write(server.privateKeyPEM, to: privateKeyPath, secret: true)
        try write(server.certificatePEM, to: certificatePath, secret: false)
    }

    private func write(_ text: String, to path: String, secret: Bool) throws {
        guard FileManager.default.createFile(
            atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: secret ? 0o600 : 0o644])
        else {
            throw TLSError("cannot write \(path)")
        }
    }
}
