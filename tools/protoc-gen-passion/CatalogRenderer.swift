import SwiftProtobuf
import SwiftProtobufPluginLibrary

/// Renders the catalog: every service's schemas and the serialized descriptors of the
/// generated files and their dependencies, so the server can answer introspection.
struct CatalogRenderer {
    let files: [FileDescriptor]
    let services: [ServiceModel]

    func render(into out: inout SwiftWriter) {
        out.doc("Everything generated from `Protocol/`: services, method schemas and descriptors.")
        out.block("public enum PassionCatalog") { out in
            out.doc("Every service's method schemas.")
            out.line("public static let schemas: [MethodSchema] = \(services.map { "\($0.swiftName).Method.schemas" }.joined(separator: " + "))")
            out.line()
            out.doc("Serialized `google.protobuf.FileDescriptorProto`s, dependencies before dependents.")
            out.line("public static let fileDescriptors: [String: Data] = [")
            for file in orderedFiles() {
                // Comments included, so `passion describe` shows the documentation of Protocol/.
                var options = ExtractProtoOptions()
                options.includeSourceCodeInfo = true
                let proto = file.extractProto(options: options)
                // Serialization of a descriptor just parsed from protoc cannot fail.
                let bytes: [UInt8] = (try? proto.serializedBytes()) ?? []
                out.line("    \"\(file.name)\": Data(base64Encoded: \"\(base64(bytes))\") ?? Data(),")
            }
            out.line("]")
            out.line()
            out.doc("File names in dependency order.")
            out.line("public static let fileOrder: [String] = [\(orderedFiles().map { "\"\($0.name)\"" }.joined(separator: ", "))]")
        }
    }

    /// The generated files and their transitive dependencies, each after what it imports.
    private func orderedFiles() -> [FileDescriptor] {
        var seen: Set<String> = []
        var ordered: [FileDescriptor] = []
        func visit(_ file: FileDescriptor) {
            guard seen.insert(file.name).inserted else { return }
            for dependency in file.dependencies { visit(dependency) }
            ordered.append(file)
        }
        for file in files { visit(file) }
        return ordered
    }

    private func base64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var output = ""
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            var value = 0
            for (offset, byte) in chunk.enumerated() { value |= Int(byte) << (16 - offset * 8) }
            for position in 0..<4 {
                if position <= chunk.count {
                    output.append(alphabet[(value >> (18 - position * 6)) & 0x3F])
                } else {
                    output.append("=")
                }
            }
            index += 3
        }
        return output
    }
}
