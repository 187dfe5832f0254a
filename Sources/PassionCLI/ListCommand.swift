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
            let files = try await Schema.files(for: service, connection: connection, options: try options.callOptions())
            guard let (package, descriptor) = Schema.service(named: service, in: files) else {
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
        return try response.fileDescriptors.map { try Google_Protobuf_FileDescriptorProto(serializedBytes: $0) }
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
