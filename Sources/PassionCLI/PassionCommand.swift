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
            Global options (--server, --ca, -H, --token, --deadline, ...) go before or after the subcommand.
            A failed call exits with 64 + its status code (NOT_FOUND = 69) and prints the status on stderr.
            """,
        subcommands: [
            PingCommand.self, HealthCommand.self, ListCommand.self, DescribeCommand.self, CallCommand.self,
            BenchCommand.self,
        ])

    static func main() async {
        await main(placingGlobalOptions(Array(CommandLine.arguments.dropFirst())))
    }

    /// Options of `ClientOptions` that take a value as the next argument.
    static let globalOptionsWithValue: Set<String> = [
        "--server", "--ca", "--data-dir", "--cert", "--key", "-H", "--header", "--token", "--service-key",
        "--as-user", "--deadline",
    ]

    /// ArgumentParser reads a subcommand's options only after its name, so the global options
    /// given before it (`passion --server HOST:PORT list`) are moved behind it, in their order.
    static func placingGlobalOptions(_ arguments: [String]) -> [String] {
        let subcommands = Set(configuration.subcommands.compactMap { $0.configuration.commandName } + ["help"])
        var leading: [String] = []
        var index = arguments.startIndex
        while index < arguments.endIndex, !subcommands.contains(arguments[index]) {
            let argument = arguments[index]
            leading.append(argument)
            index += 1
            if globalOptionsWithValue.contains(argument), index < arguments.endIndex {
                leading.append(arguments[index])
                index += 1
            }
        }
        guard index < arguments.endIndex, !leading.isEmpty, arguments[index] != "help" else { return arguments }
        return [arguments[index]] + leading + arguments[(index + 1)...]
    }
}
