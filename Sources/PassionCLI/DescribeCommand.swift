import Foundation
import ArgumentParser
import PassionClient
import SwiftProtobuf

/// `passion describe SYMBOL`: a service, method, message or enum in .proto syntax, read from
/// the server.
struct DescribeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "describe", abstract: "Show a service, method, message or enum as the server defines it.")

    @OptionGroup var options: ClientOptions

    @Argument(help: "For example passion.v1.Diagnostics, passion.v1.Diagnostics/Echo or passion.v1.EchoRequest.")
    var symbol: String

    func run() async throws {
        do {
            let connection = try await options.connect()
            defer { Task { await connection.close() } }
            let (name, files) = try await Schema.resolve(symbol, connection: connection, options: try options.callOptions())
            guard let text = ProtoText.describe(name, in: files) else {
                throw RPCError(code: .notFound, message: "unknown symbol \(symbol)")
            }
            print(text, terminator: "")
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw Failure.exit(error)
        }
    }
}
