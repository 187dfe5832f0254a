import Foundation
import ArgumentParser

/// `passion`: calls any method of a passion server with JSON, inspects it, and load-tests it.
@main
struct PassionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passion",
        abstract: "Call, inspect and load-test a passion-rpc server.",
        discussion: """
            With no flags it talks to 127.0.0.1:7443 and trusts ./.passion/tls/ca.pem when it exists.
            A failed call exits with 64 + its status code (NOT_FOUND = 69) and prints the status on stderr.
            """,
        subcommands: [
            PingCommand.self, HealthCommand.self, ListCommand.self, DescribeCommand.self, CallCommand.self,
            BenchCommand.self,
        ])
}
