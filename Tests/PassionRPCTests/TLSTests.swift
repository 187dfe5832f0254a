import Foundation
import NIOPosix
import PassionTestSupport
import PassionServerAPI
import PassionClient
import PassionRPCServer
import PassionTLS
import SwiftProtobuf
import Testing

/// TLS through OpenSSL: verification failures give clear errors, mTLS identifies the client,
/// and a stock `openssl s_client` completes the handshake.
@Suite("TLS")
struct TLSTests {
    private func expectConnectFailure(
        _ configuration: ClientConnectionConfiguration, containing text: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        do {
            let connection = try await ClientConnection.connect(configuration)
            await connection.close()
            Issue.record("connected although it should fail with \(text)", sourceLocation: sourceLocation)
        } catch let error as RPCError {
            #expect(error.code == .unavailable, sourceLocation: sourceLocation)
            #expect(error.message.lowercased().contains(text.lowercased()), "message: \(error.message)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("TLS 1.3 with ALPN passion/1 is negotiated by default")
    func negotiated() async throws {
        try await TestServer.with { server in
            let connection = try await server.connect()
            #expect(connection.tls?.protocolVersion == "TLSv1.3")
            #expect(connection.tls?.applicationProtocol == "passion/1")
            await connection.close()
        }
    }

    @Test("a server whose CA the client does not trust is refused")
    func wrongCA() async throws {
        try await TestServer.with { server in
            await expectConnectFailure(
                server.clientConfiguration(trustRoots: server.certificates.otherCAPath), containing: "certificate verify failed")
        }
    }

    @Test("a certificate for another host name is refused")
    func hostnameMismatch() async throws {
        try await TestServer.with { server in
            await expectConnectFailure(server.clientConfiguration(hostname: "wrong.example"), containing: "hostname mismatch")
        }
    }

    @Test("an expired server certificate is refused")
    func expiredCertificate() async throws {
        try await TestServer.with(tls: {
            .server(certificateChainPath: $0.expiredCertificate, privateKeyPath: $0.expiredKey)
        }) { server in
            await expectConnectFailure(server.clientConfiguration(), containing: "expired")
        }
    }

    @Test("a plaintext client on the TLS port gets no service, and the server serves on")
    func plaintextClientOnTLSPort() async throws {
        try await TestServer.with { server in
            var configuration = server.clientConfiguration(plaintext: true)
            configuration.connectTimeout = .seconds(3)
            do {
                let connection = try await ClientConnection.connect(configuration)
                await connection.close()
                Issue.record("a plaintext client completed the passion handshake on a TLS port")
            } catch let error as RPCError {
                #expect(error.code == .unavailable || error.code == .internal, "got \(error)")
            }
            let good = try await server.connect()
            #expect(try await good.diagnostics.echo(EchoRequest()) == EchoResponse())
            await good.close()
        }
    }

    @Test("mTLS: no client certificate is refused; a signed one is accepted and named")
    func mutualTLS() async throws {
        try await TestServer.with(
            tls: { .server(certificateChainPath: $0.serverCertificate, privateKeyPath: $0.serverKey, clientCAPath: $0.caPath) },
            routes: { router in
                router.registerUnary(
                    MethodDescriptor(service: "test.Identity", method: "Who", kind: .unary), EchoRequest.self,
                    EchoResponse.self
                ) { _, context in
                    EchoResponse.with { $0.payload = Data((context.peerCertificate?.commonName ?? "none").utf8) }
                }
            }
        ) { server in
            // TLS 1.3 clients learn of a rejected certificate after their handshake finished,
            // so the failure may surface on connect or on the first call.
            do {
                let anonymous = try await ClientConnection.connect(server.clientConfiguration())
                _ = try await anonymous.diagnostics.echo(EchoRequest())
                Issue.record("a client without a certificate was served")
            } catch let error as RPCError {
                #expect(error.code == .unavailable)
            }
            let configuration = server.clientConfiguration(
                certificate: server.certificates.clientCertificate, key: server.certificates.clientKey)
            let connection = try await ClientConnection.connect(configuration)
            let who = MethodDescriptor(service: "test.Identity", method: "Who", kind: .unary)
            let response = try await connection.unary(who, EchoRequest(), as: EchoResponse.self, options: .defaults)
            #expect(String(decoding: response.message.payload, as: UTF8.self) == "test-client")
            await connection.close()
        }
    }

    @Test("TLS 1.2 is accepted only when both sides allow it")
    func tls12() async throws {
        try await TestServer.with(tls: {
            .server(certificateChainPath: $0.serverCertificate, privateKeyPath: $0.serverKey, minimumVersion: .tls12)
        }) { server in
            var configuration = server.clientConfiguration()
            configuration.tls?.minimumVersion = .tls12
            let connection = try await ClientConnection.connect(configuration)
            #expect(connection.tls?.protocolVersion == "TLSv1.3")
            await connection.close()
        }
    }

    /// Runs `openssl s_client` against the server, sends the preface and an empty HELLO, and
    /// returns what it printed (stderr with -brief) and the bytes it received.
    private func sClient(_ server: TestServer, alpn: String) async throws -> (report: String, received: Data) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = [
            "s_client", "-connect", "127.0.0.1:\(server.port)", "-alpn", alpn, "-CAfile", server.certificates.caPath,
            "-verify_return_error", "-verify_ip", "127.0.0.1", "-tls1_3", "-brief",
        ]
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data([0x50, 0x41, 0x53, 0x53, 0x49, 0x4F, 0x4E, 0x01, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]))
        // Blocking reads stay off the cooperative threads the servers under test need. Input
        // stays open until the server's HELLO arrives (or s_client ends, as it does when the
        // handshake fails): closing it after a fixed wait lost the HELLO on a loaded machine.
        let hello = try await onOwnThread { () -> Data in
            var data = Data()
            while data.count < 10 {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                data.append(chunk)
            }
            return data
        }
        try input.fileHandleForWriting.close()
        let (rest, report) = try await onOwnThread {
            (output.fileHandleForReading.readDataToEndOfFile(),
             String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        }
        return (report, hello + rest)
    }

    @Test("openssl s_client completes the handshake, verifies the certificate and receives the server HELLO")
    func opensslInterop() async throws {
        try await TestServer.with { server in
            let (report, received) = try await sClient(server, alpn: "passion/1")
            #expect(report.contains("Protocol version: TLSv1.3"), "\(report)")
            #expect(report.contains("Verification: OK"), "\(report)")
            // The server's HELLO: a frame of type 0x01 on call 0.
            #expect(received.count >= 10 && received[received.startIndex + 4] == 0x01, "received \(received.count) bytes")
        }
    }

    @Test("a client offering only another ALPN protocol gets the no_application_protocol alert (WIRE.md 2)")
    func wrongALPN() async throws {
        try await TestServer.with { server in
            let (report, received) = try await sClient(server, alpn: "h2")
            #expect(!report.contains("CONNECTION ESTABLISHED"), "\(report)")
            #expect(report.contains("no application protocol"), "\(report)")
            #expect(received.isEmpty)
        }
    }
}
