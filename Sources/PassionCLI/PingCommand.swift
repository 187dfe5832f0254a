import Foundation
import ArgumentParser
import PassionClient

/// `passion ping`: connection setup time and PING round trips.
struct PingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ping", abstract: "Measure round-trip time with PING frames.")

    @OptionGroup var options: ClientOptions

    @Option(name: .shortAndLong, help: "Pings to send.")
    var count: Int = 3

    func run() async throws {
        let start = ContinuousClock.now
        let connection: ClientConnection
        do {
            connection = try await options.connect()
        } catch {
            throw Failure.exit(error)
        }
        let setup = ContinuousClock.now - start
        let tls = connection.tls.map { " \($0.protocolVersion) \($0.cipher)" } ?? " plaintext"
        print("connected to \(options.server) in \(Format.micros(setup)) (\(tls.dropFirst()))")
        for sequence in 1...max(1, count) {
            do {
                let rtt = try await connection.ping()
                print("pong \(sequence): \(Format.micros(rtt))")
            } catch {
                throw Failure.exit(error)
            }
        }
        await connection.close()
    }
}

enum Format {
    static func micros(_ duration: Duration) -> String {
        let micros = Double(duration.components.seconds) * 1e6 + Double(duration.components.attoseconds) / 1e12
        return micros >= 10_000 ? String(format: "%.1f ms", micros / 1000) : String(format: "%.0f µs", micros)
    }
}

