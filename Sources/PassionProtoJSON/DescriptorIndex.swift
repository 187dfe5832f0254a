import SwiftProtobuf

/// The messages and enums of a set of `.proto` files by full name, so that JSON can be turned
/// into protobuf bytes and back for types this program was not compiled with (a newer server's).
public struct DescriptorIndex: Sendable {
    private var messages: [String: Google_Protobuf_DescriptorProto] = [:]
    private var enums: [String: Google_Protobuf_EnumDescriptorProto] = [:]

    /// `files` as a server's introspection or the compiled-in catalog gives them.
    public init(files: [Google_Protobuf_FileDescriptorProto]) {
        for file in files {
            let scope = file.package.isEmpty ? "" : file.package + "."
            for message in file.messageType { add(message, scope: scope) }
            for enumeration in file.enumType { enums[scope + enumeration.name] = enumeration }
        }
    }

    private mutating func add(_ message: Google_Protobuf_DescriptorProto, scope: String) {
        let name = scope + message.name
        messages[name] = message
        for nested in message.nestedType { add(nested, scope: name + ".") }
        for enumeration in message.enumType { enums[name + "." + enumeration.name] = enumeration }
    }

    /// A message by full name, with or without the descriptors' leading dot.
    public func message(_ name: String) -> Google_Protobuf_DescriptorProto? {
        messages[name.hasPrefix(".") ? String(name.dropFirst()) : name]
    }

    /// The key/value entry message when `field` is a map.
    func mapEntry(of field: Google_Protobuf_FieldDescriptorProto) -> Google_Protobuf_DescriptorProto? {
        guard field.type == .message, field.isRepeated, let entry = message(field.typeName), entry.options.mapEntry,
            entry.field.count == 2
        else { return nil }
        return entry
    }

    func enumeration(_ name: String) -> Google_Protobuf_EnumDescriptorProto? {
        enums[name.hasPrefix(".") ? String(name.dropFirst()) : name]
    }
}

/// A JSON value that does not fit its field, named by its path (`identity.email_verified`).
public struct ProtoJSONError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var problem: String

    public var description: String { path.isEmpty ? problem : "field \(path): \(problem)" }
}

/// How the well-known types this protocol uses are written in JSON.
enum WellKnown: String {
    case timestamp = "google.protobuf.Timestamp"
    case duration = "google.protobuf.Duration"
    case fieldMask = "google.protobuf.FieldMask"
    case structure = "google.protobuf.Struct"
    case value = "google.protobuf.Value"
    case listValue = "google.protobuf.ListValue"

    init?(typeName: String) {
        self.init(rawValue: typeName.hasPrefix(".") ? String(typeName.dropFirst()) : typeName)
    }
}

extension Google_Protobuf_FieldDescriptorProto {
    /// The name JSON uses: protoc's `json_name`, else lowerCamelCase of the proto name.
    var jsonKey: String { hasJsonName ? jsonName : Self.lowerCamel(name) }

    var isRepeated: Bool { label == .repeated }

    /// Whether the field belongs to a real oneof (not proto3 `optional`'s synthetic one).
    var isInOneof: Bool { hasOneofIndex && !proto3Optional }

    static func lowerCamel(_ snake: String) -> String {
        var result = ""
        var upperNext = false
        for character in snake {
            if character == "_" {
                upperNext = true
            } else {
                result += upperNext ? character.uppercased() : String(character)
                upperNext = false
            }
        }
        return result
    }

    static func snake(_ camel: String) -> String {
        var result = ""
        for character in camel {
            if character.isUppercase {
                result += "_" + character.lowercased()
            } else {
                result.append(character)
            }
        }
        return result
    }

    /// What JSON a field of this type takes, for error messages.
    var expectation: String {
        switch type {
        case .double, .float: "a number"
        case .int32, .sint32, .sfixed32: "an integer (int32)"
        case .uint32, .fixed32: "a non-negative integer (uint32)"
        case .int64, .sint64, .sfixed64: "an integer or a string of one (int64)"
        case .uint64, .fixed64: "a non-negative integer or a string of one (uint64)"
        case .bool: "true or false"
        case .string: "a string"
        case .bytes: "a base64 string (bytes)"
        case .enum: "an enum value name or number (\(typeName.dropFirst()))"
        case .message, .group: "an object (\(typeName.dropFirst()))"
        }
    }
}
