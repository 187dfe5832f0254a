import PassionClient
import SwiftProtobuf

/// Renders descriptors back into .proto syntax that protoc accepts: comments (when the server's
/// descriptors carry them), oneof groups, nested types, maps and each method's policy option.
enum ProtoText {
    /// Descriptor paths (field numbers of FileDescriptorProto and friends) to leading comments.
    private struct Comments {
        var byPath: [[Int32]: String] = [:]

        init(_ file: Google_Protobuf_FileDescriptorProto) {
            for location in file.sourceCodeInfo.location where location.hasLeadingComments {
                byPath[location.path] = location.leadingComments
            }
        }

        func render(_ path: [Int32], indent: String) -> String {
            guard let text = byPath[path] else { return "" }
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasPrefix(" ") ? String($0.dropFirst()) : String($0) }
            while lines.last?.isEmpty == true { lines.removeLast() }
            return lines.map { "\(indent)//" + ($0.isEmpty ? "" : " " + $0) + "\n" }.joined()
        }
    }

    // Field numbers in descriptor.proto, which source-code-info paths are made of.
    private enum Tag {
        static let fileMessage: Int32 = 4, fileEnum: Int32 = 5, fileService: Int32 = 6
        static let messageField: Int32 = 2, messageNested: Int32 = 3, messageEnum: Int32 = 4, messageOneof: Int32 = 8
        static let enumValue: Int32 = 2, serviceMethod: Int32 = 2
    }

    static func describe(_ symbol: String, in files: [Google_Protobuf_FileDescriptorProto]) -> String? {
        for file in files {
            let comments = Comments(file)
            let prefix = file.package.isEmpty ? "" : file.package + "."
            for (index, service) in file.service.enumerated() {
                let path = [Tag.fileService, Int32(index)]
                if prefix + service.name == symbol { return header(file) + render(service, path: path, comments: comments) }
                for (methodIndex, method) in service.method.enumerated() where "\(prefix)\(service.name).\(method.name)" == symbol {
                    return header(file) + render(method, path: path + [Tag.serviceMethod, Int32(methodIndex)], comments: comments, indent: "")
                }
            }
            for (index, message) in file.messageType.enumerated() {
                if let text = findMessage(symbol, message, name: prefix + message.name, path: [Tag.fileMessage, Int32(index)], comments: comments) {
                    return header(file) + text
                }
            }
            for (index, enumeration) in file.enumType.enumerated() where prefix + enumeration.name == symbol {
                return header(file) + render(enumeration, path: [Tag.fileEnum, Int32(index)], comments: comments, indent: "")
            }
        }
        return nil
    }

    private static func header(_ file: Google_Protobuf_FileDescriptorProto) -> String {
        "// \(file.name)\n"
    }

    private static func findMessage(
        _ symbol: String, _ message: Google_Protobuf_DescriptorProto, name: String, path: [Int32], comments: Comments
    ) -> String? {
        if name == symbol { return render(message, path: path, comments: comments, indent: "") }
        for (index, nested) in message.nestedType.enumerated() {
            if let text = findMessage(symbol, nested, name: name + "." + nested.name, path: path + [Tag.messageNested, Int32(index)], comments: comments) {
                return text
            }
        }
        for (index, enumeration) in message.enumType.enumerated() where name + "." + enumeration.name == symbol {
            return render(enumeration, path: path + [Tag.messageEnum, Int32(index)], comments: comments, indent: "")
        }
        return nil
    }

    // MARK: Services

    private static func render(_ service: Google_Protobuf_ServiceDescriptorProto, path: [Int32], comments: Comments) -> String {
        var text = comments.render(path, indent: "") + "service \(service.name) {\n"
        for (index, method) in service.method.enumerated() {
            text += render(method, path: path + [Tag.serviceMethod, Int32(index)], comments: comments, indent: "  ")
        }
        return text + "}\n"
    }

    private static func render(
        _ method: Google_Protobuf_MethodDescriptorProto, path: [Int32], comments: Comments, indent: String
    ) -> String {
        let input = (method.clientStreaming ? "stream " : "") + method.inputType.trimmingLeadingDot
        let output = (method.serverStreaming ? "stream " : "") + method.outputType.trimmingLeadingDot
        var text = comments.render(path, indent: indent) + "\(indent)rpc \(method.name)(\(input)) returns (\(output))"
        guard method.options.hasPolicy else { return text + ";\n" }
        text += " {\n\(indent)  option (passion.v1.policy) = { \(policy(method.options.policy)) };\n\(indent)}\n"
        return text
    }

    /// The policy in text format: idempotency and scope and cost as set, and always the principal
    /// (its default, PRINCIPAL_ANYONE, is worth seeing).
    static func policy(_ policy: MethodPolicy) -> String {
        var parts: [String] = []
        if policy.idempotency != .idempotencyUnknown { parts.append("idempotency: \(name(of: policy.idempotency))") }
        parts.append("principal: \(name(of: policy.principal))")
        if !policy.scope.isEmpty { parts.append("scope: \"\(policy.scope)\"") }
        if policy.cost > 0 { parts.append("cost: \(policy.cost)") }
        return parts.joined(separator: ", ")
    }

    /// The proto name of a generated enum case (`noSideEffects` → `NO_SIDE_EFFECTS`); the number
    /// for a value this CLI does not know.
    static func name<E: SwiftProtobuf.Enum>(of value: E) -> String {
        let described = String(describing: value)
        guard !described.hasPrefix("UNRECOGNIZED") else { return "\(value.rawValue)" }
        var name = ""
        for character in described {
            if character.isUppercase, !name.isEmpty { name += "_" }
            name += character.uppercased()
        }
        return name
    }

    // MARK: Messages and enums

    private static func render(
        _ message: Google_Protobuf_DescriptorProto, path: [Int32], comments: Comments, indent: String
    ) -> String {
        var text = comments.render(path, indent: indent) + "\(indent)message \(message.name) {\n"
        for (index, nested) in message.nestedType.enumerated() where !nested.options.mapEntry {
            text += render(nested, path: path + [Tag.messageNested, Int32(index)], comments: comments, indent: indent + "  ")
        }
        for (index, enumeration) in message.enumType.enumerated() {
            text += render(enumeration, path: path + [Tag.messageEnum, Int32(index)], comments: comments, indent: indent + "  ")
        }
        var renderedOneofs: Set<Int32> = []
        for (index, field) in message.field.enumerated() {
            let fieldPath = path + [Tag.messageField, Int32(index)]
            // A real oneof (not proto3 `optional`'s synthetic one) is written as a group where
            // its first member stands.
            guard field.hasOneofIndex, !field.proto3Optional else {
                text += render(field, path: fieldPath, in: message, comments: comments, indent: indent + "  ")
                continue
            }
            let group = field.oneofIndex
            guard renderedOneofs.insert(group).inserted, Int(group) < message.oneofDecl.count else { continue }
            text += comments.render(path + [Tag.messageOneof, group], indent: indent + "  ")
            text += "\(indent)  oneof \(message.oneofDecl[Int(group)].name) {\n"
            for (memberIndex, member) in message.field.enumerated() where member.hasOneofIndex && member.oneofIndex == group && !member.proto3Optional {
                text += render(member, path: path + [Tag.messageField, Int32(memberIndex)], in: message, comments: comments, indent: indent + "    ")
            }
            text += "\(indent)  }\n"
        }
        return text + "\(indent)}\n"
    }

    private static func render(
        _ field: Google_Protobuf_FieldDescriptorProto, path: [Int32], in message: Google_Protobuf_DescriptorProto,
        comments: Comments, indent: String
    ) -> String {
        comments.render(path, indent: indent)
            + "\(indent)\(label(field, in: message))\(type(field, in: message)) \(field.name) = \(field.number);\n"
    }

    private static func render(
        _ enumeration: Google_Protobuf_EnumDescriptorProto, path: [Int32], comments: Comments, indent: String
    ) -> String {
        var text = comments.render(path, indent: indent) + "\(indent)enum \(enumeration.name) {\n"
        for (index, value) in enumeration.value.enumerated() {
            text += comments.render(path + [Tag.enumValue, Int32(index)], indent: indent + "  ")
            text += "\(indent)  \(value.name) = \(value.number);\n"
        }
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
