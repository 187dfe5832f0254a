import Foundation
import SwiftProtobuf

/// Writing the well-known types in their JSON forms.
extension ProtoJSONDecoder {
    func wellKnown(
        _ type: WellKnown, _ bytes: ArraySlice<UInt8>, path: String, depth: Int, into out: inout String
    ) throws(ProtoJSONError) {
        guard depth < Self.maximumDepth else { throw ProtoJSONError(path: path, problem: "nested more than \(Self.maximumDepth) deep") }
        let fields = try Self.read(bytes, path: path)
        func varint(_ number: Int32) -> UInt64 {
            if case .varint(let value)? = fields[number]?.last { return value }
            return 0
        }
        func text(_ raw: Raw) throws(ProtoJSONError) -> String {
            guard case .bytes(let body) = raw, let text = String(validating: body, as: UTF8.self) else { throw Self.malformed(path) }
            return text
        }
        switch type {
        case .timestamp:
            let seconds = Int64(bitPattern: varint(1))
            let nanos = Int32(truncatingIfNeeded: varint(2))
            // RFC 3339 has years 0001–9999 only.
            guard (-62_135_596_800...253_402_300_799).contains(seconds), (0...999_999_999).contains(nanos) else {
                throw ProtoJSONError(path: path, problem: "a timestamp outside 0001–9999 (\(seconds) s, \(nanos) ns)")
            }
            out += Self.quoted(Self.formatTimestamp(seconds: seconds, nanos: nanos))
        case .duration:
            let seconds = Int64(bitPattern: varint(1))
            let nanos = Int32(truncatingIfNeeded: varint(2))
            guard (-315_576_000_000...315_576_000_000).contains(seconds), (-999_999_999...999_999_999).contains(nanos) else {
                throw ProtoJSONError(path: path, problem: "a duration out of range (\(seconds) s, \(nanos) ns)")
            }
            let sign = seconds < 0 || nanos < 0 ? "-" : ""
            out += "\"\(sign)\(seconds.magnitude)\(Self.fraction(nanos.magnitude))s\""
        case .fieldMask:
            var paths: [String] = []
            for raw in fields[1] ?? [] {
                paths.append(try text(raw).split(separator: ".").map { Google_Protobuf_FieldDescriptorProto.lowerCamel(String($0)) }.joined(separator: "."))
            }
            out += Self.quoted(paths.joined(separator: ","))
        case .structure:
            var members = JSONMembers()
            for raw in fields[1] ?? [] {
                guard case .bytes(let entry) = raw else { throw Self.malformed(path) }
                let entryFields = try Self.read(entry, path: path)
                let key = try entryFields[1]?.last.map { raw throws(ProtoJSONError) in try text(raw) } ?? ""
                var value = "null"
                if case .bytes(let body)? = entryFields[2]?.last {
                    value = ""
                    try wellKnown(.value, body, path: "\(path).\(key)", depth: depth + 1, into: &value)
                }
                members.set(Self.quoted(key), value)
            }
            out += members.object
        case .value:
            // A oneof: the kind set last on the wire holds (1 null, 2 number, 3 string, 4 bool,
            // 5 struct, 6 list).
            let kind = fields.setLast(of: [1, 2, 3, 4, 5, 6])
            if kind == 2, case .fixed64(let bits)? = fields[2]?.last {
                out += Self.number(Double(bitPattern: bits))
            } else if kind == 3, let raw = fields[3]?.last {
                out += Self.quoted(try text(raw))
            } else if kind == 4, case .varint(let flag)? = fields[4]?.last {
                out += flag == 0 ? "false" : "true"
            } else if kind == 5, case .bytes(let body)? = fields[5]?.last {
                try wellKnown(.structure, body, path: path, depth: depth + 1, into: &out)
            } else if kind == 6, case .bytes(let body)? = fields[6]?.last {
                try wellKnown(.listValue, body, path: path, depth: depth + 1, into: &out)
            } else {
                out += "null"
            }
        case .listValue:
            var items: [String] = []
            for raw in fields[1] ?? [] {
                guard case .bytes(let body) = raw else { throw Self.malformed(path) }
                var item = ""
                try wellKnown(.value, body, path: path, depth: depth + 1, into: &item)
                items.append(item)
            }
            out += "[" + items.joined(separator: ",") + "]"
        }
    }

    /// RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as the JSON mapping writes it.
    static func formatTimestamp(seconds: Int64, nanos: Int32) -> String {
        let days = Int(seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400)
        let secondOfDay = Int(seconds - Int64(days) * 86_400)
        let (year, month, day) = civil(fromDays: days)
        let clock = String(format: "%04d-%02d-%02dT%02d:%02d:%02d", year, month, day, secondOfDay / 3600, secondOfDay / 60 % 60, secondOfDay % 60)
        return clock + fraction(nanos.magnitude) + "Z"
    }

    static func fraction(_ nanos: UInt32) -> String {
        guard nanos > 0 else { return "" }
        if nanos % 1_000_000 == 0 { return String(format: ".%03d", nanos / 1_000_000) }
        if nanos % 1_000 == 0 { return String(format: ".%06d", nanos / 1_000) }
        return String(format: ".%09d", nanos)
    }

    /// The inverse of `daysFromCivil` (Howard Hinnant's algorithm).
    static func civil(fromDays days: Int) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
