import Foundation
import PassionJSON
import SwiftProtobuf

/// Turns JSON (the protobuf JSON mapping) into protobuf bytes for a message known only by its
/// descriptor. Field names may be the JSON (lowerCamelCase) or the proto (snake_case) names, as
/// may field-mask paths; every mismatch names the field and the JSON it expected.
public struct ProtoJSONEncoder: Sendable {
    let index: DescriptorIndex

    public init(index: DescriptorIndex) {
        self.index = index
    }

    public func encode(_ json: String, as typeName: String) throws(ProtoJSONError) -> [UInt8] {
        let value: StrictJSON
        do {
            value = try StrictJSON.parse(Array(json.utf8))
        } catch {
            throw ProtoJSONError(path: "", problem: "not valid JSON: \(error)")
        }
        var writer = WireWriter()
        try message(value, typeName: typeName, path: "", into: &writer)
        return writer.bytes
    }

    private func message(_ value: StrictJSON, typeName: String, path: String, into writer: inout WireWriter) throws(ProtoJSONError) {
        if let wellKnown = WellKnown(typeName: typeName) {
            try self.wellKnown(wellKnown, value, path: path, into: &writer)
            return
        }
        guard let descriptor = index.message(typeName) else {
            throw ProtoJSONError(path: path, problem: "unknown message type \(typeName)")
        }
        guard case .object(let members) = value else {
            throw ProtoJSONError(path: path, problem: "expected an object (\(descriptor.name)), got \(Self.kind(value))")
        }
        var oneofs: [Int32: String] = [:]
        var given: [Int32: String] = [:]
        for (key, member) in members.sorted(by: { $0.key < $1.key }) {
            guard let field = descriptor.field.first(where: { $0.jsonKey == key || $0.name == key }) else {
                throw ProtoJSONError(path: path, problem: "\(descriptor.name) has no field \(key)")
            }
            let fieldPath = path.isEmpty ? field.name : path + "." + field.name
            if let other = given.updateValue(key, forKey: field.number) {
                throw ProtoJSONError(path: fieldPath, problem: "given twice, as \(other) and as \(key)")
            }
            if case .null = member, WellKnown(typeName: field.typeName) != .value { continue }  // null: the default
            if field.isInOneof {
                if let other = oneofs[field.oneofIndex] {
                    throw ProtoJSONError(path: fieldPath, problem: "\(other) is set too: they are one of a oneof, give one")
                }
                oneofs[field.oneofIndex] = field.name
            }
            if let entry = index.mapEntry(of: field) {
                try map(member, field: field, entry: entry, path: fieldPath, into: &writer)
            } else if field.isRepeated {
                guard case .array(let items) = member else {
                    throw ProtoJSONError(path: fieldPath, problem: "expected a list of \(field.expectation), got \(Self.kind(member))")
                }
                for (position, item) in items.enumerated() {
                    try singular(item, field: field, path: "\(fieldPath)[\(position)]", into: &writer)
                }
            } else {
                try singular(member, field: field, path: fieldPath, into: &writer)
            }
        }
    }

    private func map(
        _ value: StrictJSON, field: Google_Protobuf_FieldDescriptorProto, entry: Google_Protobuf_DescriptorProto, path: String,
        into writer: inout WireWriter
    ) throws(ProtoJSONError) {
        guard case .object(let members) = value else {
            throw ProtoJSONError(path: path, problem: "expected an object (a map), got \(Self.kind(value))")
        }
        for (key, member) in members.sorted(by: { $0.key < $1.key }) {
            var body = WireWriter()
            let keyField = entry.field[0]
            // Map keys are strings in JSON whatever their type; the key field parses them.
            let keyJSON: StrictJSON
            if keyField.type == .bool {
                guard key == "true" || key == "false" else {
                    throw ProtoJSONError(path: "\(path)[\(key)]", problem: "a bool map key is \"true\" or \"false\"")
                }
                keyJSON = .bool(key == "true")
            } else {
                keyJSON = .string(key)
            }
            try singular(keyJSON, field: keyField, path: "\(path)[\(key)]", into: &body)
            try singular(member, field: entry.field[1], path: "\(path)[\(key)]", into: &body)
            writer.tag(field.number, .lengthDelimited)
            writer.lengthDelimited(body.bytes)
        }
    }

    func singular(
        _ value: StrictJSON, field: Google_Protobuf_FieldDescriptorProto, path: String, into writer: inout WireWriter
    ) throws(ProtoJSONError) {
        let number = field.number
        func mismatch() -> ProtoJSONError {
            ProtoJSONError(path: path, problem: "expected \(field.expectation), got \(Self.kind(value))")
        }
        switch field.type {
        case .double, .float:
            let double: Double
            switch value {
            case .number(let number): double = number
            case .string("NaN"): double = .nan
            case .string("Infinity"): double = .infinity
            case .string("-Infinity"): double = -.infinity
            case .string(let text): guard let parsed = Double(text) else { throw mismatch() }; double = parsed
            default: throw mismatch()
            }
            if field.type == .double {
                writer.tag(number, .fixed64)
                writer.fixed64(double.bitPattern)
            } else {
                // What rounds to a finite float fits (3.4028235e38 as other tools print the maximum).
                guard double.isNaN || double.isInfinite || Float(double).isFinite else {
                    throw ProtoJSONError(path: path, problem: "\(double) is out of range for float")
                }
                writer.tag(number, .fixed32)
                writer.fixed32(Float(double).bitPattern)
            }
        case .int32, .sint32, .sfixed32:
            guard let integer = Self.integer(value), let int32 = Int32(exactly: integer) else { throw mismatch() }
            switch field.type {
            case .sint32: writer.tag(number, .varint); writer.varint(UInt64(UInt32(bitPattern: (int32 << 1) ^ (int32 >> 31))))
            case .sfixed32: writer.tag(number, .fixed32); writer.fixed32(UInt32(bitPattern: int32))
            default: writer.tag(number, .varint); writer.varint(UInt64(bitPattern: Int64(int32)))
            }
        case .int64, .sint64, .sfixed64:
            guard let int64 = Self.integer(value) else { throw mismatch() }
            switch field.type {
            case .sint64: writer.tag(number, .varint); writer.varint(UInt64(bitPattern: (int64 << 1) ^ (int64 >> 63)))
            case .sfixed64: writer.tag(number, .fixed64); writer.fixed64(UInt64(bitPattern: int64))
            default: writer.tag(number, .varint); writer.varint(UInt64(bitPattern: int64))
            }
        case .uint32, .fixed32:
            guard let unsigned = Self.unsigned(value), let uint32 = UInt32(exactly: unsigned) else { throw mismatch() }
            if field.type == .fixed32 { writer.tag(number, .fixed32); writer.fixed32(uint32) } else { writer.tag(number, .varint); writer.varint(UInt64(uint32)) }
        case .uint64, .fixed64:
            guard let uint64 = Self.unsigned(value) else { throw mismatch() }
            if field.type == .fixed64 { writer.tag(number, .fixed64); writer.fixed64(uint64) } else { writer.tag(number, .varint); writer.varint(uint64) }
        case .bool:
            guard case .bool(let flag) = value else { throw mismatch() }
            writer.tag(number, .varint)
            writer.varint(flag ? 1 : 0)
        case .string:
            guard case .string(let text) = value else { throw mismatch() }
            writer.tag(number, .lengthDelimited)
            writer.lengthDelimited(Array(text.utf8))
        case .bytes:
            guard case .string(let text) = value, let data = Self.base64(text) else { throw mismatch() }
            writer.tag(number, .lengthDelimited)
            writer.lengthDelimited(Array(data))
        case .enum:
            let enumeration = index.enumeration(field.typeName)
            let raw: Int32
            switch value {
            case .string(let name):
                guard let match = enumeration?.value.first(where: { $0.name == name }) else {
                    let names = enumeration?.value.map(\.name).joined(separator: ", ") ?? ""
                    throw ProtoJSONError(path: path, problem: "\(name) is not a value of \(field.typeName.dropFirst()) (\(names))")
                }
                raw = match.number
            case .number:
                guard let integer = Self.integer(value), let number = Int32(exactly: integer) else { throw mismatch() }
                raw = number
            default:
                throw mismatch()
            }
            writer.tag(number, .varint)
            writer.varint(UInt64(bitPattern: Int64(raw)))
        case .message:
            var body = WireWriter()
            try message(value, typeName: field.typeName, path: path, into: &body)
            writer.tag(number, .lengthDelimited)
            writer.lengthDelimited(body.bytes)
        case .group:
            throw ProtoJSONError(path: path, problem: "groups are not supported")
        }
    }

    // MARK: Values

    /// An integer from a JSON number (whole, and below 2^53, where a double is still exact) or a
    /// string of digits (any 64-bit value).
    static func integer(_ value: StrictJSON) -> Int64? {
        switch value {
        case .number(let number):
            guard number == number.rounded(), abs(number) < 9_007_199_254_740_992 else { return nil }
            return Int64(exactly: number)
        case .string(let text): return Int64(text)
        default: return nil
        }
    }

    static func unsigned(_ value: StrictJSON) -> UInt64? {
        switch value {
        case .number(let number):
            guard number == number.rounded(), number >= 0, number < 9_007_199_254_740_992 else { return nil }
            return UInt64(exactly: number)
        case .string(let text): return UInt64(text)
        default: return nil
        }
    }

    /// Standard or URL-safe base64, padding optional (the JSON mapping accepts both).
    static func base64(_ text: String) -> Data? {
        var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while standard.count % 4 != 0 { standard += "=" }
        return Data(base64Encoded: standard)
    }

    static func kind(_ value: StrictJSON) -> String {
        switch value {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "a list"
        case .object: "an object"
        }
    }
}
