import Foundation
import ArgumentParser
import PassionClient
import SwiftProtobuf

/// `passion list [SERVICE]`: services, or one service's methods, one per line.
struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List services, or the methods of one service.")

    @OptionGroup var options: ClientOptions

    @Argument(help: "A service whose methods to list.")
    var service: String?

    func run() async throws {
        do {
            let connection = try await options.connect()
            defer { Task { await connection.close() } }
            guard let service else {
                let response = try await connection.introspection.listServices(ListServicesRequest(), options: try options.callOptions())
                for name in response.services { print(name) }
                return
            }
            let (name, files) = try await Schema.resolve(service, connection: connection, options: try options.callOptions())
            guard let (package, descriptor) = Schema.service(named: name, in: files) else {
                throw RPCError(code: .notFound, message: "\(service) is not a service")
            }
            for method in descriptor.method { print("\(package)\(descriptor.name)/\(method.name)") }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw Failure.exit(error)
        }
    }
}

/// Reading schemas from the server's introspection service.
enum Schema {
    static func files(
        for symbol: String, connection: ClientConnection, options: CallOptions
    ) async throws -> [Google_Protobuf_FileDescriptorProto] {
        let response = try await connection.introspection.fileDescriptors(
            FileDescriptorsRequest.with { $0.symbol = symbol }, options: options)
        return try response.fileDescriptors.map { try Google_Protobuf_FileDescriptorProto(serializedBytes: $0, extensions: Options_Extensions) }
    }

    /// The full name of what people type and the files that define it: a full name
    /// (`passion.v1.Habits`, `passion.v1.Habits/Complete`), or a short one (`Habits`,
    /// `Habits/Complete`, `CompleteHabitRequest`) when it names exactly one symbol.
    static func resolve(
        _ symbol: String, connection: ClientConnection, options: CallOptions
    ) async throws -> (String, [Google_Protobuf_FileDescriptorProto]) {
        let normalized = symbol.replacingOccurrences(of: "/", with: ".")
        do {
            return (normalized, try await files(for: symbol, connection: connection, options: options))
        } catch let error as RPCError where error.code == .notFound && !error.isUserNotFound {
            let services = try await connection.introspection.listServices(ListServicesRequest(), options: options).services
            var known: Set<String> = []
            for service in services {
                for file in try await files(for: service, connection: connection, options: options) { known.formUnion(symbols(in: file)) }
            }
            guard let match = try match(symbol, among: known) else { throw error }
            return (match, try await files(for: match, connection: connection, options: options))
        }
    }

    /// The one full name among `known` that `symbol` names, full or short.
    static func match(_ symbol: String, among known: Set<String>) throws -> String? {
        let normalized = symbol.replacingOccurrences(of: "/", with: ".")
        let matches = known.filter { $0 == normalized || $0.hasSuffix("." + normalized) }.sorted()
        guard matches.count <= 1 else {
            throw ValidationError("\(symbol) is ambiguous: \(matches.joined(separator: ", "))")
        }
        return matches.first
    }

    static func match(_ symbol: String, in files: [Google_Protobuf_FileDescriptorProto]) throws -> String? {
        try match(symbol, among: Set(files.flatMap(symbols(in:))))
    }

    /// Every service, method, message and enum a file defines, fully qualified.
    static func symbols(in file: Google_Protobuf_FileDescriptorProto) -> [String] {
        let prefix = file.package.isEmpty ? "" : file.package + "."
        var names: [String] = []
        for service in file.service {
            names.append(prefix + service.name)
            names += service.method.map { "\(prefix)\(service.name).\($0.name)" }
        }
        func add(_ message: Google_Protobuf_DescriptorProto, scope: String) {
            let name = scope + message.name
            names.append(name)
            names += message.enumType.map { name + "." + $0.name }
            for nested in message.nestedType where !nested.options.mapEntry { add(nested, scope: name + ".") }
        }
        for message in file.messageType { add(message, scope: prefix) }
        names += file.enumType.map { prefix + $0.name }
        return names
    }

    /// The service and its package prefix ("passion.v1.").
    static func service(
        named name: String, in files: [Google_Protobuf_FileDescriptorProto]
    ) -> (String, Google_Protobuf_ServiceDescriptorProto)? {
        for file in files {
            let prefix = file.package.isEmpty ? "" : file.package + "."
            if let service = file.service.first(where: { prefix + $0.name == name }) { return (prefix, service) }
        }
        return nil
    }
}

extension RPCError {
    /// The server's answer to `as-user` naming no active user: it refuses every method alike,
    /// introspection too, and must not read as an unknown method.
    var isUserNotFound: Bool { details?.reason == "USER_NOT_FOUND" }
}
