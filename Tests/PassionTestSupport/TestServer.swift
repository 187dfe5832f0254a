import Foundation
import Logging
import NIOCore
import PassionServerAPI
import PassionRPCServer
import PassionServices
import PassionTLS
import Testing

/// A real server on a loopback port with TLS, for one test.
public final class TestServer: Sendable {
    public let server: RPCServer
    public let port: Int
    public let certificates: TestCertificates
    private let task: Task<Void, any Error>

    private init(server: RPCServer, port: Int, certificates: TestCertificates, task: Task<Void, any Error>) {
        self.server = server
        self.port = port
        self.certificates = certificates
        self.task = task
    }

    /// Starts a server with the built-in services plus `services`; `configure` adjusts its
    /// configuration, `routes` adds raw handlers.
    public static func start(
        services: [any RPCService] = [], authenticator: any Authenticator = AnonymousAuthenticator(),
        tls: ((TestCertificates) -> TLSConfiguration?)? = nil,
        configure: (inout RPCServerConfiguration) -> Void = { _ in },
        routes: (inout RPCRouter) -> Void = { _ in }, logger: Logger? = nil
    ) async throws -> TestServer {
        let certificates = try TestCertificates.shared()
        let tlsConfiguration = tls.map { $0(certificates) } ?? .server(
            certificateChainPath: certificates.serverCertificate, privateKeyPath: certificates.serverKey)
        var configuration = RPCServerConfiguration(host: "127.0.0.1", port: 0, tls: tlsConfiguration)
        configure(&configuration)
        var router = BuiltinServices(additional: services).router
        routes(&router)
        let logger = logger ?? .quiet("test-server")
        let server = try RPCServer(configuration: configuration, router: router, authenticator: authenticator, logger: logger)
        let task = Task { try await server.run() }
        let port = try await server.port
        return TestServer(server: server, port: port, certificates: certificates, task: task)
    }

    public func clientConfiguration(
        hostname: String = "127.0.0.1", trustRoots: String? = nil, certificate: String? = nil, key: String? = nil,
        plaintext: Bool = false
    ) -> ClientConnectionConfiguration {
        let tls: TLSConfiguration? = plaintext
            ? nil
            : .client(
                serverHostname: hostname, trustRootsPath: trustRoots ?? certificates.caPath, certificateChainPath: certificate,
                privateKeyPath: key)
        return ClientConnectionConfiguration(host: "127.0.0.1", port: port, tls: tls)
    }

    public func connect() async throws -> ClientConnection {
        try await ClientConnection.connect(clientConfiguration())
    }

    /// Graceful stop; waits until the server's run() returned.
    public func stop() async {
        server.beginShutdown()
        _ = try? await task.value
    }

    /// Runs `body` with a started server and always stops it.
    public static func with<T>(
        services: [any RPCService] = [], authenticator: any Authenticator = AnonymousAuthenticator(),
        tls: ((TestCertificates) -> TLSConfiguration?)? = nil,
        configure: (inout RPCServerConfiguration) -> Void = { _ in },
        routes: (inout RPCRouter) -> Void = { _ in },
        _ body: (TestServer) async throws -> T
    ) async throws -> T {
        let server = try await start(
            services: services, authenticator: authenticator, tls: tls, configure: configure, routes: routes)
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }
}

/// Checks that `body` throws an `RPCError` with `code`, and returns it.
@discardableResult
public func expectRPCError<T>(
    _ code: StatusCode, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T
) async -> RPCError? {
    do {
        _ = try await body()
        Issue.record("expected \(code.name), but the call succeeded", sourceLocation: sourceLocation)
        return nil
    } catch let error as RPCError {
        #expect(error.code == code, "got \(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected \(code.name), got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
