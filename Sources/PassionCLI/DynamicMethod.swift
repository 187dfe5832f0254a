import ArgumentParser
import Foundation
import NIOCore
import PassionClient
import PassionProtoJSON
import SwiftProtobuf

/// A method as the server describes it, so a CLI older than the server calls new methods with
/// new fields; only when the server's introspection is off, as this CLI was built.
struct DynamicMethod: Sendable {
    let descriptor: MethodDescriptor
    let inputType: String
    let outputType: String
    let encoder: ProtoJSONEncoder
    let decoder: ProtoJSONDecoder

    /// Where the schema came from, for `-v`.
    let source: String

    static func resolve(
        _ name: String, connection: ClientConnection, options: CallOptions, emitDefaults: Bool
    ) async throws -> DynamicMethod {
        let files: [Google_Protobuf_FileDescriptorProto]
        let fullName: String
        var source = "the server's descriptors"
        do {
            (fullName, files) = try await Schema.resolve(name, connection: connection, options: options)
        } catch let error as RPCError where error.code == .notFound && !error.isUserNotFound {
            throw ValidationError("unknown method \(name); `passion list` shows the services")
        } catch let error as RPCError where [.unimplemented, .permissionDenied, .unauthenticated].contains(error.code) {
            files = try PassionCatalog.fileDescriptors.values.map {
                try Google_Protobuf_FileDescriptorProto(serializedBytes: $0, extensions: Options_Extensions)
            }
            guard let match = try Schema.match(name, in: files) else {
                throw ValidationError("unknown method \(name) (the server's introspection is off, and this CLI does not know it)")
            }
            fullName = match
            source = "the schemas built into this CLI (the server's introspection answered \(error.code.name))"
        }
        for file in files {
            let prefix = file.package.isEmpty ? "" : file.package + "."
            for service in file.service {
                guard let method = service.method.first(where: { "\(prefix)\(service.name).\($0.name)" == fullName }) else { continue }
                let kind: CallKind =
                    switch (method.clientStreaming, method.serverStreaming) {
                    case (false, false): .unary
                    case (false, true): .serverStreaming
                    case (true, false): .clientStreaming
                    case (true, true): .bidirectional
                    }
                let index = DescriptorIndex(files: files)
                var decoder = ProtoJSONDecoder(index: index)
                decoder.emitDefaults = emitDefaults
                return DynamicMethod(
                    descriptor: MethodDescriptor(service: prefix + service.name, method: method.name, kind: kind),
                    inputType: method.inputType, outputType: method.outputType,
                    encoder: ProtoJSONEncoder(index: index), decoder: decoder, source: source)
            }
        }
        throw ValidationError("\(name) is not a method; `passion list SERVICE` shows a service's methods")
    }

    /// One request message from JSON; a mismatch names the field (`line` for streams).
    func request(_ json: String, line: Int?) throws -> ByteBuffer {
        do {
            return ByteBuffer(bytes: try encoder.encode(json, as: inputType))
        } catch {
            let which = line.map { " (line \($0))" } ?? ""
            throw ValidationError("request\(which) does not fit \(inputType.dropFirst()): \(error)")
        }
    }

    func responseJSON(_ bytes: ByteBuffer) throws -> String {
        try decoder.decode(Array(bytes.readableBytesView), as: outputType)
    }
}
