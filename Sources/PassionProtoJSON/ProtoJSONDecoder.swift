import Foundation
import PassionJSON
import SwiftProtobuf

/// Turns protobuf bytes of a message known only by its descriptor into JSON (the protobuf JSON
/// mapping, compact, fields in number order), as `SwiftProtobuf`'s `jsonString()` writes it.
public struct ProtoJSONDecoder: Sendable {
    let index: DescriptorIndex
    /// Print fields at their default too (0, "", false, the enum's first value, [] and {});
    /// unset messages and oneof members stay out.
    public var emitDefaults = false

    public init(index: DescriptorIndex) {
        self.index = index
    }

    /// Nesting deeper than this is refused rather than recursed into (SwiftProtobuf's limit).
    static let maximumDepth = 100

    public func decode(_ bytes: [UInt8], as typeName: String) throws(ProtoJSONError) -> String {
        var out = ""
        try message(bytes[...], typeName: typeName, path: "", depth: 0, into: &out)
        return out
    }

    /// One field's occurrences on the wire, as read.
    enum Raw {
        case varint(UInt64), fixed64(UInt64), fixed32(UInt32), bytes(ArraySlice<UInt8>)
    }

    /// A message's fields as read: each number's occurrences in wire order, and where each number
    /// was seen last (of a oneof's members, the one set last is the one that holds).
    struct Fields {
        var occurrences: [Int32: [Raw]] = [:]
        /// Where on the wire each occurrence came, parallel to `occurrences`.
        var positions: [Int32: [Int]] = [:]
        var lastSeen: [Int32: Int] = [:]

        subscript(number: Int32) -> [Raw]? { occurrences[number] }

        /// Of `numbers` (a oneof's members), the one seen last on the wire, if any was.
        func setLast(of numbers: [Int32]) -> Int32? {
            numbers.compactMap { number in lastSeen[number].map { (number, $0) } }.max { $0.1 < $1.1 }?.0
        }
    }

    static func read(_ bytes: ArraySlice<UInt8>, path: String) throws(ProtoJSONError) -> Fields {
        var reader = WireReader(bytes: bytes)
        var fields = Fields()
        var position = 0
        while !reader.isAtEnd {
            guard let key = reader.varint(), let number = Int32(exactly: key >> 3), number > 0 else { throw malformed(path) }
            let raw: Raw
            switch key & 7 {
            case 0: guard let value = reader.varint() else { throw malformed(path) }; raw = .varint(value)
            case 1: guard let value = reader.fixed64() else { throw malformed(path) }; raw = .fixed64(value)
            case 2: guard let value = reader.lengthDelimited() else { throw malformed(path) }; raw = .bytes(value)
            case 5: guard let value = reader.fixed32() else { throw malformed(path) }; raw = .fixed32(value)
            default: throw malformed(path)
            }
            fields.occurrences[number, default: []].append(raw)
            fields.positions[number, default: []].append(position)
            fields.lastSeen[number] = position
            position += 1
        }
        return fields
    }

    static func malformed(_ path: String) -> ProtoJSONError {
        ProtoJSONError(path: path, problem: "not valid protobuf")
    }

    func message(_ bytes: ArraySlice<UInt8>, typeName: String, path: String, depth: Int, into out: inout String) throws(ProtoJSONError) {
        guard depth < Self.maximumDepth else { throw ProtoJSONError(path: path, problem: "nested more than \(Self.maximumDepth) deep") }
        if let wellKnown = WellKnown(typeName: typeName) {
            try self.wellKnown(wellKnown, bytes, path: path, depth: depth, into: &out)
            return
        }
        guard let descriptor = index.message(typeName) else {
            throw ProtoJSONError(path: path, problem: "unknown message type \(typeName)")
        }
        let fields = try Self.read(bytes, path: path)
        // Protobuf keeps the oneof member set last; the members set before it are not printed.
        var oneofMembers: [Int32: [Int32]] = [:]
        for field in descriptor.field where field.isInOneof { oneofMembers[field.oneofIndex, default: []].append(field.number) }
        let oneofHolders = oneofMembers.compactMapValues { fields.setLast(of: $0) }
        var members: [String] = []
        for field in descriptor.field.sorted(by: { $0.number < $1.number }) {
            if field.isInOneof, let holder = oneofHolders[field.oneofIndex], holder != field.number { continue }
            let fieldPath = path.isEmpty ? field.name : path + "." + field.name
            var raws = fields[field.number] ?? []
            if field.isInOneof {
                // Setting another member cleared this one: only what came after it is merged.
                let siblings = (oneofMembers[field.oneofIndex] ?? []).filter { $0 != field.number }
                if let cleared = siblings.compactMap({ fields.lastSeen[$0] }).max(), let positions = fields.positions[field.number] {
                    raws = zip(raws, positions).filter { $0.1 > cleared }.map(\.0)
                }
            }
            var text = ""
            if let entry = index.mapEntry(of: field) {
                guard !raws.isEmpty || emitDefaults else { continue }
                try map(raws, entry: entry, path: fieldPath, depth: depth, into: &text)
            } else if field.isRepeated {
                guard !raws.isEmpty || emitDefaults else { continue }
                let values = try unpack(raws, field: field, path: fieldPath)
                text = "["
                for (position, raw) in values.enumerated() {
                    if position > 0 { text += "," }
                    try singular(raw, field: field, path: "\(fieldPath)[\(position)]", depth: depth, into: &text)
                }
                text += "]"
            } else if field.type == .message, raws.count > 1 {
                // A message field seen twice is merged: its parts concatenated, as protobuf does.
                var merged: [UInt8] = []
                for raw in raws {
                    guard case .bytes(let body) = raw else { throw Self.malformed(fieldPath) }
                    merged += body
                }
                try singular(.bytes(merged[...]), field: field, path: fieldPath, depth: depth, into: &text)
            } else if let last = raws.last {
                try singular(last, field: field, path: fieldPath, depth: depth, into: &text)
            } else {
                guard emitDefaults, !field.isInOneof, field.type != .message, let value = defaultJSON(field) else { continue }
                text = value
            }
            members.append(Self.quoted(field.jsonKey) + ":" + text)
        }
        out += "{" + members.joined(separator: ",") + "}"
    }

    private func map(
        _ raws: [Raw], entry: Google_Protobuf_DescriptorProto, path: String, depth: Int, into out: inout String
    ) throws(ProtoJSONError) {
        var members = JSONMembers()
        for raw in raws {
            guard case .bytes(let body) = raw else { throw Self.malformed(path) }
            let fields = try Self.read(body, path: path)
            var key = ""
            if let keyRaw = fields[entry.field[0].number]?.last {
                try singular(keyRaw, field: entry.field[0], path: path, depth: depth, into: &key)
            } else {
                key = defaultJSON(entry.field[0]) ?? "\"\""
            }
            if !key.hasPrefix("\"") { key = Self.quoted(key) }  // JSON object keys are strings
            var value = ""
            if let valueRaw = fields[entry.field[1].number]?.last {
                try singular(valueRaw, field: entry.field[1], path: "\(path)[\(key)]", depth: depth, into: &value)
            } else {
                value = defaultJSON(entry.field[1]) ?? "{}"
            }
            members.set(key, value)
        }
        out += members.object
    }

    /// Repeated numbers may come packed (one length-delimited run) or one by one.
    private func unpack(_ raws: [Raw], field: Google_Protobuf_FieldDescriptorProto, path: String) throws(ProtoJSONError) -> [Raw] {
        guard ![.string, .bytes, .message, .group].contains(field.type) else { return raws }
        var values: [Raw] = []
        for raw in raws {
            guard case .bytes(let run) = raw else {
                values.append(raw)
                continue
            }
            var reader = WireReader(bytes: run)
            while !reader.isAtEnd {
                switch field.type {
                case .double, .fixed64, .sfixed64: guard let value = reader.fixed64() else { throw Self.malformed(path) }; values.append(.fixed64(value))
                case .float, .fixed32, .sfixed32: guard let value = reader.fixed32() else { throw Self.malformed(path) }; values.append(.fixed32(value))
                default: guard let value = reader.varint() else { throw Self.malformed(path) }; values.append(.varint(value))
                }
            }
        }
        return values
    }

    func singular(
        _ raw: Raw, field: Google_Protobuf_FieldDescriptorProto, path: String, depth: Int, into out: inout String
    ) throws(ProtoJSONError) {
        switch (field.type, raw) {
        case (.double, .fixed64(let bits)): out += Self.number(Double(bitPattern: bits))
        case (.float, .fixed32(let bits)): out += Self.number(Float(bitPattern: bits))
        case (.int32, .varint(let value)): out += "\(Int32(truncatingIfNeeded: value))"
        case (.sint32, .varint(let value)): let bits = UInt32(truncatingIfNeeded: value); out += "\(Int32(bitPattern: bits >> 1) ^ -Int32(bitPattern: bits & 1))"
        case (.sfixed32, .fixed32(let bits)): out += "\(Int32(bitPattern: bits))"
        case (.uint32, .varint(let value)): out += "\(UInt32(truncatingIfNeeded: value))"
        case (.fixed32, .fixed32(let bits)): out += "\(bits)"
        case (.int64, .varint(let value)): out += "\"\(Int64(bitPattern: value))\""
        case (.sint64, .varint(let value)): out += "\"\(Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1))\""
        case (.sfixed64, .fixed64(let bits)): out += "\"\(Int64(bitPattern: bits))\""
        case (.uint64, .varint(let value)), (.fixed64, .fixed64(let value)): out += "\"\(value)\""
        case (.bool, .varint(let value)): out += value == 0 ? "false" : "true"
        case (.string, .bytes(let body)):
            guard let text = String(validating: body, as: UTF8.self) else {
                throw ProtoJSONError(path: path, problem: "a string that is not UTF-8")
            }
            out += Self.quoted(text)
        case (.bytes, .bytes(let body)): out += "\"" + Data(body).base64EncodedString() + "\""
        case (.enum, .varint(let value)):
            let number = Int32(truncatingIfNeeded: value)
            if let name = index.enumeration(field.typeName)?.value.first(where: { $0.number == number })?.name {
                out += Self.quoted(name)
            } else {
                out += "\(number)"
            }
        case (.message, .bytes(let body)): try message(body, typeName: field.typeName, path: path, depth: depth + 1, into: &out)
        default: throw ProtoJSONError(path: path, problem: "wire type does not match \(field.type)")
        }
    }

    private func defaultJSON(_ field: Google_Protobuf_FieldDescriptorProto) -> String? {
        if index.mapEntry(of: field) != nil { return "{}" }
        if field.isRepeated { return "[]" }
        switch field.type {
        case .double, .float, .int32, .sint32, .sfixed32, .uint32, .fixed32: return "0"
        case .int64, .sint64, .sfixed64, .uint64, .fixed64: return "\"0\""
        case .bool: return "false"
        case .string, .bytes: return "\"\""
        case .enum: return index.enumeration(field.typeName)?.value.first.map { Self.quoted($0.name) } ?? "0"
        case .message, .group: return nil
        }
    }

    /// Shortest text that reads back as the same value (a float as a float: 0.1, not
    /// 0.10000000149011612); NaN and the infinities as the mapping's strings.
    static func number<F: BinaryFloatingPoint & LosslessStringConvertible>(_ value: F) -> String {
        if value.isNaN { return "\"NaN\"" }
        if value.isInfinite { return value > 0 ? "\"Infinity\"" : "\"-Infinity\"" }
        if value == value.rounded(), abs(value) < 1e15 { return "\(Int64(value))" }
        return value.description
    }

    static func quoted(_ text: String) -> String { JSONText.quoted(text) }
}

/// Reads protobuf's wire format.
struct WireReader {
    let bytes: ArraySlice<UInt8>
    var position: Int

    init(bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.position = bytes.startIndex
    }

    var isAtEnd: Bool { position >= bytes.endIndex }

    mutating func varint() -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while position < bytes.endIndex, shift < 64 {
            let byte = bytes[position]
            position += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }

    mutating func fixed32() -> UInt32? {
        guard bytes.endIndex - position >= 4 else { return nil }
        var value: UInt32 = 0
        for offset in 0..<4 { value |= UInt32(bytes[position + offset]) << UInt32(offset * 8) }
        position += 4
        return value
    }

    mutating func fixed64() -> UInt64? {
        guard bytes.endIndex - position >= 8 else { return nil }
        var value: UInt64 = 0
        for offset in 0..<8 { value |= UInt64(bytes[position + offset]) << UInt64(offset * 8) }
        position += 8
        return value
    }

    mutating func lengthDelimited() -> ArraySlice<UInt8>? {
        guard let length = varint(), length <= UInt64(bytes.endIndex - position) else { return nil }
        let start = position
        position += Int(length)
        return bytes[start..<position]
    }
}

/// A JSON object's members in the order their keys first came. A map entry whose key came before
/// replaces the earlier value, as protobuf parsers do, rather than repeating a key in the JSON.
struct JSONMembers {
    private var keys: [String] = []
    private var values: [String: String] = [:]

    /// `key` is already quoted JSON text.
    mutating func set(_ key: String, _ value: String) {
        if values.updateValue(value, forKey: key) == nil { keys.append(key) }
    }

    var object: String {
        "{" + keys.map { $0 + ":" + (values[$0] ?? "null") }.joined(separator: ",") + "}"
    }
}
