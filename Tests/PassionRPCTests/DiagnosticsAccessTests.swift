import Foundation
import NIOCore
import PassionServerAPI
import PassionClient
import PassionRPCServer
import PassionServices
import PassionTestSupport
import PassionWire
import SwiftProtobuf
import Testing

/// Who may call Diagnostics, and whether it honours its own compression switch.
@Suite("Diagnostics access")
struct DiagnosticsAccessTests {
    /// Any caller presenting `authorization: ServiceKey ok` is a service; everyone else anonymous.
    struct KeyAuthenticator: Authenticator {
        func authenticate(_ credentials: CallCredentials) async throws -> Principal {
            switch credentials.metadata["authorization"] {
            case "ServiceKey ok": return Principal(kind: .service, id: "tester")
            case nil: return .anonymous
            default: throw RPCError(code: .unauthenticated, message: "bad credential", details: ErrorDetails(reason: "SERVICE_KEY_UNKNOWN"))
            }
        }
    }

    @Test("a bad credential fails even a method open to anyone (WIRE.md 8): it is refused, not ignored")
    func badCredentialOnOpenMethod() async throws {
        try await TestServer.with(authenticator: KeyAuthenticator()) { server in
            let connection = try await server.connect()
            var options = CallOptions()
            options.metadata.add("authorization", "ServiceKey wrong")
            let error = await expectRPCError(.unauthenticated) { try await connection.diagnostics.echo(EchoRequest(), options: options) }
            #expect(error?.details?.reason == "SERVICE_KEY_UNKNOWN")
            #expect(try await connection.diagnostics.echo(EchoRequest()) == EchoResponse())
            await connection.close()
        }
    }

    @Test("the deployment chooses: anyone, services only, or off")
    func access() async throws {
        let descriptors = { (access: DiagnosticsAccess) in
            BuiltinServices(diagnostics: access).router.descriptors.filter { $0.service == Diagnostics.serviceName }
        }
        #expect(descriptors(.anyone).allSatisfy { $0.principal == .anyone } && !descriptors(.anyone).isEmpty)
        #expect(descriptors(.services).allSatisfy { $0.principal == .service } && !descriptors(.services).isEmpty)
        #expect(descriptors(.off).isEmpty)

        try await TestServer.with(
            authenticator: KeyAuthenticator(), routes: { $0.require(.service, service: Diagnostics.serviceName) }
        ) { server in
            let connection = try await server.connect()
            let stranger = await expectRPCError(.unauthenticated) {
                try await connection.diagnostics.echo { $0.responseSize = 16 * 1024 * 1024 }
            }
            #expect(stranger?.details?.reason == "CREDENTIAL_REQUIRED")
            var options = CallOptions()
            options.metadata.add("authorization", "ServiceKey ok")
            #expect(try await connection.diagnostics.echo(EchoRequest.with { $0.payload = Data("hi".utf8) }, options: options).payload
                == Data("hi".utf8))
            await connection.close()
        }
    }

    @Test("EchoStream compresses its answers only when the request allows it")
    func echoStreamCompression() async throws {
        try await TestServer.with { server in
            for allowed in [false, true] {
                let raw = try await RawConnection.open(port: server.port, caPath: server.certificates.caPath)
                var settings = ConnectionSettings()
                settings.compression = .deflate
                _ = try await raw.handshake(settings)
                let request = try EchoRequest.with {
                    $0.responseSize = 64 * 1024
                    $0.compressResponse = allowed
                }.serializedBytes() as [UInt8]
                try await raw.send(RawFrames.call(1, method: "passion.v1.Diagnostics/EchoStream", message: nil))
                try await raw.send(RawFrames.frame(.message, flags: .endStream, callID: 1, payload: request))
                let message = try #require(try await raw.next(.message))
                #expect(message.flags.contains(.compressed) == allowed, "compress_response \(allowed)")
                await raw.close()
            }
        }
    }
}
