import Foundation
import PassionServerAPI
import PassionRPCServer
import SwiftProtobuf

/// `passion.v1.Introspection`: the hosted services and their schema, from the descriptors
/// embedded at generation time.
public struct IntrospectionService: Introspection.ServiceProtocol {
    private let services: [String]
    private let files: [String: Google_Protobuf_FileDescriptorProto]

    /// `services` are the names the server hosts (`RPCRouter.serviceNames`).
    public init(services: [String]) {
        self.services = services.sorted()
        var files: [String: Google_Protobuf_FileDescriptorProto] = [:]
        for (name, data) in PassionCatalog.fileDescriptors {
            if let proto = try? Google_Protobuf_FileDescriptorProto(serializedBytes: data) {
                files[name] = proto
            }
        }
        self.files = files
    }

    public func listServices(request: ListServicesRequest, context: ServerContext) async throws -> ListServicesResponse {
        ListServicesResponse.with { $0.services = services }
    }

    public func fileDescriptors(
        request: FileDescriptorsRequest, context: ServerContext
    ) async throws -> FileDescriptorsResponse {
        let symbol = request.symbol.replacingOccurrences(of: "/", with: ".")
        guard let file = files.values.first(where: { Self.defines($0, symbol) }) else {
            throw RPCError(code: .notFound, message: "unknown symbol \(request.symbol)")
        }
        var ordered: [String] = []
        func visit(_ name: String) {
            guard !ordered.contains(name), let proto = files[name] else { return }
            for dependency in proto.dependency { visit(dependency) }
            ordered.append(name)
        }
        visit(file.name)
        return try FileDescriptorsResponse.with { response in
            response.fileDescriptors = try ordered.compactMap { files[$0] }.map { try $0.serializedBytes() }
        }
    }

    /// Whether `proto` defines the service, method, message or enum named `symbol`.
    static func defines(_ proto: Google_Protobuf_FileDescriptorProto, _ symbol: String) -> Bool {
        let prefix = proto.package.isEmpty ? "" : proto.package + "."
        for service in proto.service {
            let name = prefix + service.name
            if name == symbol || service.method.contains(where: { "\(name).\($0.name)" == symbol }) { return true }
        }
        func messages(_ list: [Google_Protobuf_DescriptorProto], _ scope: String) -> Bool {
            list.contains { message in
                let name = scope + message.name
                return name == symbol || messages(message.nestedType, name + ".")
                    || message.enumType.contains { name + "." + $0.name == symbol }
            }
        }
        return messages(proto.messageType, prefix) || proto.enumType.contains { prefix + $0.name == symbol }
    }
}
