import Foundation
import ArgumentParser
import PassionClient

/// `passion health [SERVICE]`: prints the serving status; exits 0 only when SERVING.
struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health", abstract: "Check the server's (or one service's) health; exit 0 when SERVING.")

    @OptionGroup var options: ClientOptions

    @Argument(help: "A service name; empty for the whole server.")
    var service: String = ""

    func run() async throws {
        do {
            let connection = try await options.connect()
            let response = try await connection.health.check(
                HealthCheckRequest.with { $0.service = service }, options: try options.callOptions())
            print(String(describing: response.status).uppercased())
            await connection.close()
            if response.status != .serving { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw Failure.exit(error)
        }
    }
}
