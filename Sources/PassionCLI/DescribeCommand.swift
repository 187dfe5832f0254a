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
            let files = try await Schema.files(for: symbol, connection: connection, options: try options.callOptions())
            guard let text = ProtoText.describe(symbol.replacingOccurrences(of: "/", with: "."), in: files) else {
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

/// Renders descriptors back into .proto syntax.
enum ProtoText {
    static func describe(_ symbol: String, in files: [Google_Protobuf_FileDescriptorProto]) -> String? {
        for file in files {
            let prefix = file.package.isEmpty ? "" : file.package + "."
            for service in file.service {
                if prefix + service.name == symbol { return render(service, file: file.name) }
                if let method = service.method.first(where: { "\(prefix)\(service.name).\($0.name)" == symbol }) {
                    return "// \(file.name)\n" + render(method) + "\n"
                }
            }
            if let text = findMessage(symbol, in: file.messageType, scope: prefix, file: file.name) { return text }
            if let found = file.enumType.first(where: { prefix + $0.name == symbol }) {
                return "// \(file.name)\n" + render(found, indent: "")
            }
        }
        return nil
    }

    private static func findMessage(
        _ symbol: String, in messages: [Google_Protobuf_DescriptorProto], scope: String, file: String
    ) -> String? {
        for message in messages {
            let name = scope + message.name
            if name == symbol { return "// \(file)\n" + render(message, indent: "") }
            if let nested = findMessage(symbol, in: message.nestedType, scope: name + ".", file: file) { return nested }
            if let found = message.enumType.first(where: { name + "." + $0.name == symbol }) {
                return "// \(file)\n" + render(found, indent: "")
            }
        }
        return nil
    }

    private static func render(_ service: Google_Protobuf_ServiceDescriptorProto, file: String) -> String {
        var text = "// \(file)\nservice \(service.name) {\n"
        for method in service.method { text += "  " + render(method) + "\n" }
        return text + "}\n"
    }

    private static func render(_ method: Google_Protobuf_MethodDescriptorProto) -> String {
        let input = (method.clientStreaming ? "stream " : "") + method.inputType.trimmingLeadingDot
        let output = (method.serverStreaming ? "stream " : "") + method.outputType.trimmingLeadingDot
        return "rpc \(method.name)(\(input)) returns (\(output));"
    }

    private static func render(_ message: Google_Protobuf_DescriptorProto, indent: String) -> String {
        var text = "\(indent)message \(message.name) {\n"
        for nested in message.nestedType where !nested.options.mapEntry {
            text += render(nested, indent: indent + "  ")
        }
        for nested in message.enumType { text += render(nested, indent: indent + "  ") }
        for field in message.field {
            text += "\(indent)  \(label(field, in: message))\(type(field, in: message)) \(field.name) = \(field.number);\n"
        }
        return text + "\(indent)}\n"
    }

    private static func render(_ enumeration: Google_Protobuf_EnumDescriptorProto, indent: String) -> String {
        var text = "\(indent)enum \(enumeration.name) {\n"
        for value in enumeration.value { text += "\(indent)  \(value.name) = \(value.number);\n" }
        return text + "\(indent)}\n"
    }

    private static func label(_ field: Google_Protobuf_FieldDescriptorProto, in message: Google_Protobuf_DescriptorProto) -> String {
        if mapEntry(field, in: message) != nil { return "" }
        if field.label == .repeated { return "repeated " }
        return field.proto3Optional ? "optional " : ""
    }

    private static func mapEntry(
        _ field: Google_Protobuf_FieldDescriptorProto, in message: Google_Protobuf_DescriptorProto
    ) -> Google_Protobuf_DescriptorProto? {
        guard field.type == .message, field.label == .repeated else { return nil }
        let entryName = field.typeName.split(separator: ".").last.map(String.init) ?? ""
        return message.nestedType.first { $0.name == entryName && $0.options.mapEntry }
    }

    private static func type(_ field: Google_Protobuf_FieldDescriptorProto, in message: Google_Protobuf_DescriptorProto) -> String {
        if let entry = mapEntry(field, in: message), entry.field.count == 2 {
            return "map<\(type(entry.field[0], in: entry)), \(type(entry.field[1], in: entry))>"
        }
        switch field.type {
        case .message, .enum, .group: return field.typeName.trimmingLeadingDot
        default: return String(describing: field.type).lowercased()
        }
    }
}

extension String {
    var trimmingLeadingDot: String { hasPrefix(".") ? String(dropFirst()) : self }
}
