import Foundation
import SwiftProtobuf
import SwiftProtobufPluginLibrary

/// A service ready to render: names computed, options parsed and checked.
struct ServiceModel {
    struct Method {
        var name: String
        /// lowerCamelCase Swift function name.
        var functionName: String
        var kind: String
        var idempotency: String
        var principal: String
        var scope: String?
        var cost: Int
        var inputType: String
        var outputType: String
        var comment: String
        var clientStreaming: Bool
        var serverStreaming: Bool
    }

    var protoName: String
    var fullName: String
    /// The Swift namespace enum, for example `Diagnostics`.
    var swiftName: String
    var comment: String
    var methods: [Method]
    var protoFile: String

    init(_ service: ServiceDescriptor, namer: SwiftProtobufNamer) throws {
        protoName = service.name
        fullName = service.fullName
        swiftName = service.name
        comment = service.protoSourceComments().strippingCommentMarkers
        protoFile = service.file.name
        methods = try service.methods.map { method in
            let policy = try MethodPolicy(parsing: method.options.unknownFields.data)
            let kind: String
            switch (method.clientStreaming, method.serverStreaming) {
            case (false, false): kind = "unary"
            case (false, true): kind = "serverStreaming"
            case (true, false): kind = "clientStreaming"
            case (true, true): kind = "bidirectional"
            }
            return Method(
                name: method.name, functionName: Self.lowerCamel(method.name), kind: kind,
                idempotency: policy.idempotency, principal: policy.principal, scope: policy.scope, cost: policy.cost,
                inputType: namer.fullName(message: method.inputType),
                outputType: namer.fullName(message: method.outputType),
                comment: method.protoSourceComments().strippingCommentMarkers,
                clientStreaming: method.clientStreaming, serverStreaming: method.serverStreaming)
        }
    }

    static func lowerCamel(_ name: String) -> String {
        guard let first = name.first else { return name }
        // "URLFetch" -> "urlFetch": lower the leading run of capitals except the last.
        let characters = Array(name)
        var index = 0
        while index < characters.count, characters[index].isUppercase { index += 1 }
        if index <= 1 { return first.lowercased() + name.dropFirst() }
        let run = index == characters.count ? index : index - 1
        return String(characters[..<run]).lowercased() + String(characters[run...])
    }
}

extension String {
    /// protoSourceComments() returns `/// ` prefixed lines; the writer adds its own.
    var strippingCommentMarkers: String {
        split(separator: "\n").map { line -> String in
            var text = Substring(line)
            if text.hasPrefix("///") { text = text.dropFirst(3) }
            if text.hasPrefix(" ") { text = text.dropFirst() }
            return String(text)
        }.joined(separator: "\n")
    }
}

/// `passion.v1.policy` (field 51842 of MethodOptions), read from the options' unknown fields
/// so the generator does not depend on code it generates itself.
struct MethodPolicy {
    static let fieldNumber: UInt64 = 51842

    var idempotency = "unknown"
    var principal = "anyone"
    var scope: String?
    var cost = 1

    init(parsing data: some Collection<UInt8>) throws {
        var reader = WireReader(bytes: Array(data)[...])
        while let (field, wireType) = try reader.tag() {
            guard field == Self.fieldNumber, wireType == 2 else {
                try reader.skip(wireType)
                continue
            }
            var inner = WireReader(bytes: try reader.lengthDelimited())
            while let (innerField, innerType) = try inner.tag() {
                if innerField == 3, innerType == 2 {
                    let text = String(decoding: try inner.lengthDelimited(), as: UTF8.self)
                    guard text.range(of: #"^[a-z][a-z_]*:[a-z][a-z_]*$"#, options: .regularExpression) != nil else {
                        throw GeneratorError("scope \"\(text)\" in passion.v1.policy is not resource:verb")
                    }
                    scope = text
                    continue
                }
                guard innerType == 0 else {
                    try inner.skip(innerType)
                    continue
                }
                let value = try inner.varint()
                switch innerField {
                case 1:
                    idempotency = try Self.name(value, ["unknown", "idempotent", "noSideEffects"], "idempotency")
                case 2:
                    principal = try Self.name(value, ["anyone", "user", "service", "admin", "userOrService"], "principal")
                case 4:
                    guard (1...1000).contains(value) else { throw GeneratorError("cost \(value) in passion.v1.policy is not 1–1000") }
                    cost = Int(value)
                default:
                    break
                }
            }
        }
    }

    private static func name(_ value: UInt64, _ names: [String], _ what: String) throws -> String {
        guard value < names.count else { throw GeneratorError("unknown \(what) value \(value) in passion.v1.policy") }
        return names[Int(value)]
    }
}

/// Just enough of the protobuf wire format to read one option message.
struct WireReader {
    var bytes: ArraySlice<UInt8>

    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while let byte = bytes.popFirst() {
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            guard shift < 64 else { break }
        }
        throw GeneratorError("malformed varint in method options")
    }

    mutating func tag() throws -> (UInt64, UInt64)? {
        guard !bytes.isEmpty else { return nil }
        let key = try varint()
        return (key >> 3, key & 7)
    }

    mutating func lengthDelimited() throws -> ArraySlice<UInt8> {
        let length = Int(try varint())
        guard length <= bytes.count else { throw GeneratorError("truncated method options") }
        defer { bytes = bytes.dropFirst(length) }
        return bytes.prefix(length)
    }

    mutating func skip(_ wireType: UInt64) throws {
        switch wireType {
        case 0: _ = try varint()
        case 1: bytes = bytes.dropFirst(8)
        case 2: _ = try lengthDelimited()
        case 5: bytes = bytes.dropFirst(4)
        default: throw GeneratorError("unsupported wire type \(wireType) in method options")
        }
    }
}

struct GeneratorError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
