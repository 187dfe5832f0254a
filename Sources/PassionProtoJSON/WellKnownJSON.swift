import Foundation
import PassionJSON
import SwiftProtobuf

/// Protobuf's wire format, as much as JSON transcoding writes.
struct WireWriter {
    enum WireType: UInt64 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5
    }

    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    mutating func tag(_ number: Int32, _ type: WireType) {
        varint(UInt64(UInt32(bitPattern: number)) << 3 | type.rawValue)
    }

    mutating func fixed32(_ value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }

    mutating func fixed64(_ value: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
    }

    mutating func lengthDelimited(_ body: [UInt8]) {
        varint(UInt64(body.count))
        bytes += body
    }
}

/// The JSON forms of the well-known types: Timestamp as RFC 3339, Duration as "1.5s", FieldMask
/// as "a,b.c", Struct/Value/ListValue as plain JSON.
extension ProtoJSONEncoder {
    func wellKnown(_ type: WellKnown, _ value: StrictJSON, path: String, into writer: inout WireWriter) throws(ProtoJSONError) {
        switch type {
        case .timestamp:
            guard case .string(let text) = value, let (seconds, nanos) = Self.parseTimestamp(text) else {
                throw ProtoJSONError(path: path, problem: "expected an RFC 3339 time such as \"2026-12-02T10:00:00Z\", got \(Self.describe(value))")
            }
            writeSecondsAndNanos(seconds, nanos, into: &writer)
        case .duration:
            guard case .string(let text) = value, let (seconds, nanos) = Self.parseDuration(text) else {
                throw ProtoJSONError(path: path, problem: "expected a duration such as \"1.5s\", got \(Self.describe(value))")
            }
            writeSecondsAndNanos(seconds, nanos, into: &writer)
        case .fieldMask:
            guard case .string(let text) = value else {
                throw ProtoJSONError(path: path, problem: "expected field paths such as \"title,dueDate\", got \(Self.describe(value))")
            }
            // The mapping writes paths in lowerCamelCase; the proto comments name them in
            // snake_case: both are accepted and sent as the proto names.
            for path in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !path.isEmpty {
                let snake = path.split(separator: ".").map { Google_Protobuf_FieldDescriptorProto.snake(String($0)) }.joined(separator: ".")
                writer.tag(1, .lengthDelimited)
                writer.lengthDelimited(Array(snake.utf8))
            }
        case .structure:
            guard case .object(let members) = value else {
                throw ProtoJSONError(path: path, problem: "expected an object, got \(Self.describe(value))")
            }
            for (key, member) in members.sorted(by: { $0.key < $1.key }) {
                var entry = WireWriter()
                entry.tag(1, .lengthDelimited)
                entry.lengthDelimited(Array(key.utf8))
                var body = WireWriter()
                try wellKnown(.value, member, path: "\(path).\(key)", into: &body)
                entry.tag(2, .lengthDelimited)
                entry.lengthDelimited(body.bytes)
                writer.tag(1, .lengthDelimited)
                writer.lengthDelimited(entry.bytes)
            }
        case .value:
            switch value {
            case .null: writer.tag(1, .varint); writer.varint(0)
            case .number(let number): writer.tag(2, .fixed64); writer.fixed64(number.bitPattern)
            case .string(let text): writer.tag(3, .lengthDelimited); writer.lengthDelimited(Array(text.utf8))
            case .bool(let flag): writer.tag(4, .varint); writer.varint(flag ? 1 : 0)
            case .object:
                var body = WireWriter()
                try wellKnown(.structure, value, path: path, into: &body)
                writer.tag(5, .lengthDelimited)
                writer.lengthDelimited(body.bytes)
            case .array:
                var body = WireWriter()
                try wellKnown(.listValue, value, path: path, into: &body)
                writer.tag(6, .lengthDelimited)
                writer.lengthDelimited(body.bytes)
            }
        case .listValue:
            guard case .array(let items) = value else {
                throw ProtoJSONError(path: path, problem: "expected a list, got \(Self.describe(value))")
            }
            for (position, item) in items.enumerated() {
                var body = WireWriter()
                try wellKnown(.value, item, path: "\(path)[\(position)]", into: &body)
                writer.tag(1, .lengthDelimited)
                writer.lengthDelimited(body.bytes)
            }
        }
    }

    private func writeSecondsAndNanos(_ seconds: Int64, _ nanos: Int32, into writer: inout WireWriter) {
        if seconds != 0 { writer.tag(1, .varint); writer.varint(UInt64(bitPattern: seconds)) }
        if nanos != 0 { writer.tag(2, .varint); writer.varint(UInt64(bitPattern: Int64(nanos))) }
    }

    private static func describe(_ value: StrictJSON) -> String {
        if case .string(let text) = value { return "\"\(text)\"" }
        return kind(value)
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` → seconds and nanoseconds since 1970 UTC.
    static func parseTimestamp(_ text: String) -> (Int64, Int32)? {
        let characters = Array(text.utf8)
        func number(_ start: Int, _ count: Int) -> Int? {
            guard start + count <= characters.count else { return nil }
            var value = 0
            for byte in characters[start..<(start + count)] {
                guard (0x30...0x39).contains(byte) else { return nil }
                value = value * 10 + Int(byte - 0x30)
            }
            return value
        }
        guard characters.count >= 20, characters[4] == 0x2D, characters[7] == 0x2D, characters[10] == 0x54 || characters[10] == 0x74,
            characters[13] == 0x3A, characters[16] == 0x3A,
            let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
            let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 60
        else { return nil }
        var index = 19
        var nanos = 0
        if characters[index] == 0x2E {
            index += 1
            var digits = 0
            while index < characters.count, (0x30...0x39).contains(characters[index]) {
                guard digits < 9 else { return nil }
                nanos = nanos * 10 + Int(characters[index] - 0x30)
                digits += 1
                index += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<9 { nanos *= 10 }
        }
        var offset = 0
        guard index < characters.count else { return nil }
        if characters[index] == 0x5A || characters[index] == 0x7A {
            index += 1
        } else if characters[index] == 0x2B || characters[index] == 0x2D, characters.count == index + 6, characters[index + 3] == 0x3A,
            let hours = number(index + 1, 2), let minutes = number(index + 4, 2), hours < 24, minutes < 60
        {
            offset = (hours * 3600 + minutes * 60) * (characters[index] == 0x2D ? -1 : 1)
            index += 6
        } else {
            return nil
        }
        guard index == characters.count, (1...9999).contains(year) else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard day <= monthDays[month - 1] else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second - offset)
        return (seconds, Int32(nanos))
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// `"-1.5s"` → (−1, −500000000).
    static func parseDuration(_ text: String) -> (Int64, Int32)? {
        guard text.hasSuffix("s"), !text.hasPrefix("+") else { return nil }
        var body = String(text.dropLast())
        let negative = body.hasPrefix("-")
        if negative { body.removeFirst() }
        let parts = body.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), parts[0].allSatisfy(\.isNumber), let seconds = Int64(parts[0]), seconds <= 315_576_000_000 else {
            return nil
        }
        var nanos = 0
        if parts.count == 2 {
            let fraction = parts[1]
            guard (1...9).contains(fraction.count), let value = Int(fraction), fraction.allSatisfy(\.isNumber) else { return nil }
            nanos = value * Int(pow(10, Double(9 - fraction.count)))
        }
        return negative ? (-seconds, Int32(-nanos)) : (seconds, Int32(nanos))
    }
}
