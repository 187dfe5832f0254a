import Foundation
import NIOPosix
import PassionRPCServer
import PassionTLS
import PassionTestSupport
import Testing

/// What the server's TLS offers: Mozilla "intermediate" suites and groups only, and a
/// short-lived development certificate that renews itself.
@Suite("TLS hardening")
struct TLSHardeningTests {
    /// Runs `openssl s_client` with `arguments` against the server; true when the handshake
    /// completed.
    static func handshake(_ server: TestServer, _ arguments: [String]) async throws -> Bool {
        try await report(server, arguments).contains("CONNECTION ESTABLISHED")
    }

    /// What `openssl s_client` printed on stderr.
    static func report(_ server: TestServer, _ arguments: [String]) async throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["s_client", "-connect", "127.0.0.1:\(server.port)", "-alpn", "passion/1", "-brief"] + arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let report = try await onOwnThread { () -> String in
            let text = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: text, as: UTF8.self)
        }
        return report
    }

    @Test("a TLS 1.2 client of a TLS 1.3-only server gets the protocol_version alert, not a bare close (WIRE.md 2)")
    func versionAlert() async throws {
        try await TestServer.with { server in
            let report = try await Self.report(server, ["-tls1_2"])
            #expect(!report.contains("CONNECTION ESTABLISHED"))
            #expect(report.contains("protocol version"), "\(report)")
        }
    }

    @Test("TLS 1.2 offers only ECDHE AEAD suites; key exchange only X25519, P-256 and P-384")
    func suitesAndGroups() async throws {
        try await TestServer.with(
            tls: { .server(certificateChainPath: $0.serverCertificate, privateKeyPath: $0.serverKey, minimumVersion: .tls12) },
            routes: { _ in }
        ) { server in
            var results: [String: Bool] = [:]
            results["ECDHE-ECDSA-AES128-GCM-SHA256"] = try await Self.handshake(server, ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"])
            for weak in ["AES128-SHA", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"] {
                results[weak] = try await Self.handshake(server, ["-tls1_2", "-cipher", weak])
            }
            for group in ["X25519", "P-256", "P-384", "X448", "P-521", "ffdhe2048"] {
                results[group] = try await Self.handshake(server, ["-tls1_3", "-groups", group])
            }
            #expect(results == [
                "ECDHE-ECDSA-AES128-GCM-SHA256": true, "AES128-SHA": false, "ECDHE-ECDSA-AES128-SHA": false,
                "ECDHE-ECDSA-AES256-SHA384": false, "X25519": true, "P-256": true, "P-384": true, "X448": false, "P-521": false,
                "ffdhe2048": false,
            ])
        }
    }

    @Test("the development certificate lasts 90 days and is renewed at start once under 30 are left")
    func developmentCertificate() throws {
        let directory = NSTemporaryDirectory() + "passion-devcert-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let development = DevelopmentCertificates(dataDirectory: directory)
        try development.ensure(host: "127.0.0.1")
        func daysLeft() throws -> Int {
            try CertificateAuthority.secondsUntilExpiry(certificatePEM: String(contentsOfFile: development.certificatePath, encoding: .utf8)) / 86_400
        }
        #expect((89...90).contains(try daysLeft()))
        let authority = CertificateAuthority(identity: PEMIdentity(
            certificatePEM: try String(contentsOfFile: development.caPath, encoding: .utf8),
            privateKeyPEM: try String(contentsOfFile: development.caKeyPath, encoding: .utf8)))
        for (left, renewed) in [(60, false), (10, true)] {
            let old = try authority.issue(commonName: "passion-server", ipAddresses: ["127.0.0.1"], validUntil: left * 86_400)
            try old.certificatePEM.write(toFile: development.certificatePath, atomically: true, encoding: .utf8)
            try old.privateKeyPEM.write(toFile: development.privateKeyPath, atomically: true, encoding: .utf8)
            try development.ensure(host: "127.0.0.1")
            let now = try daysLeft()
            let expected = renewed ? 89...90 : (left - 1)...left
            #expect(expected.contains(now), "\(left) days left became \(now)")
        }
    }
}
