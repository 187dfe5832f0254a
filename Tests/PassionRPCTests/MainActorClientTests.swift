import Foundation
import PassionServerAPI
import PassionClient
import PassionTestSupport
import Testing
import PassionRPCServer

/// The generated client used from `@MainActor` code, as an app's view model would: this file
/// compiling under Swift 6 strict concurrency is half the test.
@MainActor
@Suite("Client from the main actor")
struct MainActorClientTests {
    @Test("the closure form builds the request in the caller's isolation and reads main-actor state")
    func closureForm() async throws {
        let model = EchoModel()
        let server = try await TestServer.start()
        let connection = try await server.connect()
        let response = try await connection.diagnostics.echo { request in
            request.payload = model.payload  // main-actor state, read inside the closure
        }
        model.received = response.payload
        await connection.close()
        await server.stop()
        #expect(model.received == model.payload)
    }

    @Test("a throwing closure fails the call with its own error")
    func throwingClosure() async throws {
        struct Refused: Error {}
        let server = try await TestServer.start()
        let connection = try await server.connect()
        await #expect(throws: Refused.self) {
            _ = try await connection.diagnostics.echo { _ in throw Refused() }
        }
        await connection.close()
        await server.stop()
    }
}

@MainActor
final class EchoModel {
    let payload = Data("from the main actor".utf8)
    var received = Data()
}
