import Foundation
import PassionTLS

/// A Swift value PostgreSQL reads from its text format.
public protocol PostgresEncodable: Sendable {
    var postgresText: String { get }
}

/// A Swift value read from a column in text format.
public protocol PostgresDecodable: Sendable {
    init(postgresText: String) throws
}

/// A column value that does not have the expected type's text form.
public struct PostgresDecodingError: Error, CustomStringConvertible {
    public var type: String
    public var text: String
    public var description: String { "cannot read \(type) from a column value" }
}

extension String: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { self }
    public init(postgresText: String) { self = postgresText }
}

/// Integers travel as their decimal text.
extension PostgresEncodable where Self: FixedWidthInteger {
    public var postgresText: String { String(self) }
}

extension PostgresDecodable where Self: FixedWidthInteger {
    public init(postgresText: String) throws {
        guard let value = Self(postgresText) else { throw PostgresDecodingError(type: "\(Self.self)", text: postgresText) }
        self = value
    }
}

extension Int: PostgresEncodable, PostgresDecodable {}
extension Int64: PostgresEncodable, PostgresDecodable {}
extension Int32: PostgresEncodable, PostgresDecodable {}
extension Int16: PostgresEncodable, PostgresDecodable {}

extension Bool: PostgresEncodable, PostgresDecodable {
    public var postgresText: String { self ? "t" : "f" }
    public init(postgresText: String) throws {
        switch postgresText {
        case "t", "true": self = true
        case "f", "false": self = false
        default: throw PostgresDecodingError(type: "Bool", text: postgresText)
        }
    }
}

/// Written and read by hand: Foundation's `uuidString` and `UUID(uuidString:)` go through
/// sprintf and sscanf, which showed in the profile of every call that names a user.
extension UUID: PostgresEncodable, PostgresDecodable {
    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Lower-case 8-4-4-4-12, written straight into the string's storage.
    public var postgresText: String {
        withUnsafeBytes(of: uuid) { bytes in
            String(unsafeUninitializedCapacity: 36) { out in
                var position = 0
                for (index, byte) in bytes.enumerated() {
                    if index == 4 || index == 6 || index == 8 || index == 10 {
                        out[position] = UInt8(ascii: "-")
                        position += 1
                    }
                    out[position] = Self.hexDigits[Int(byte >> 4)]
                    out[position + 1] = Self.hexDigits[Int(byte & 0x0F)]
                    position += 2
                }
                return position
            }
        }
    }

    public init(postgresText: String) throws {
        var text = postgresText
        var uuid: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        let parsed = text.withUTF8 { utf8 in
            withUnsafeMutableBytes(of: &uuid) { out in Self.parse(utf8, into: out) }
        }
        guard parsed else { throw PostgresDecodingError(type: "UUID", text: postgresText) }
        self = UUID(uuid: uuid)
    }

    /// 8-4-4-4-12 hex digits into 16 bytes; false for anything else. Every group has an even
    /// number of digits, so a byte's two digits never straddle a dash.
    static func parse(_ text: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableRawBufferPointer) -> Bool {
        guard text.count == 36 else { return false }
        var index = 0
        var byte = 0
        while index < 36 {
            if index == 8 || index == 13 || index == 18 || index == 23 {
                guard text[index] == UInt8(ascii: "-") else { return false }
                index += 1
                continue
            }
            guard let high = nibble(text[index]), let low = nibble(text[index + 1]) else { return false }
            out[byte] = high << 4 | low
            byte += 1
            index += 2
        }
        return true
    }

    private static func nibble(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return digit - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// A non-negative number's decimal digits, zero-padded to at least `width` ("%0*d" without
/// `String(format:)`, which goes through CoreFoundation's formatter on every call).
func appendPadded(_ value: Int, width: Int, to text: inout [UInt8]) {
    let digits = String(value).utf8
    if digits.count < width { text += repeatElement(UInt8(ascii: "0"), count: width - digits.count) }
    text += digits
}

/// `timestamptz`: sent and read as ISO 8601 in UTC with microseconds.
extension Date: PostgresEncodable, PostgresDecodable {
    public var postgresText: String {
        let seconds = timeIntervalSince1970
        // Outside years 1–9999 (and for NaN) there is no calendar text to write, and converting
        // to time_t would trap: PostgreSQL's infinities keep such a bound meaning "unbounded".
        guard seconds >= -62_135_596_800 else { return "-infinity" }
        guard seconds < 253_402_300_800 else { return "infinity" }
        var whole = floor(seconds)
        var micros = Int(((seconds - whole) * 1_000_000).rounded())
        if micros == 1_000_000 {
            // A fraction of .9999995 or more is the next second, not seven digits of this one.
            whole += 1
            micros = 0
        }
        guard whole < 253_402_300_800 else { return "infinity" }
        var time = time_t(whole)
        var parts = tm()
        gmtime_r(&time, &parts)
        // Straight into the string's storage: every statement that takes the call's instant
        // formats it, and an array of fields with a String per number cost 2.6% of a Dashboard.
        let text = String(unsafeUninitializedCapacity: 29) { out in
            var position = 0
            func put(_ value: Int, width: Int, then separator: Unicode.Scalar) {
                var rest = value
                for offset in stride(from: width - 1, through: 0, by: -1) {
                    out[position + offset] = UInt8(ascii: "0") + UInt8(rest % 10)
                    rest /= 10
                }
                out[position + width] = UInt8(ascii: separator)
                position += width + 1
            }
            put(Int(parts.tm_year) + 1900, width: 4, then: "-")
            put(Int(parts.tm_mon) + 1, width: 2, then: "-")
            put(Int(parts.tm_mday), width: 2, then: " ")
            put(Int(parts.tm_hour), width: 2, then: ":")
            put(Int(parts.tm_min), width: 2, then: ":")
            put(Int(parts.tm_sec), width: 2, then: ".")
            put(micros, width: 6, then: "+")
            out[position] = UInt8(ascii: "0")
            out[position + 1] = UInt8(ascii: "0")
            return position + 2
        }
        return text
    }

    public init(postgresText: String) throws {
        // The session runs with TimeZone=UTC and DateStyle=ISO: "2026-11-25 01:02:03.123456+00";
        // inside JSON (to_jsonb) the same instant reads "2026-11-25T01:02:03.123456+00:00".
        // Parsed by hand: Foundation's ISO8601DateFormatter builds an ICU formatter per use,
        // which cost more than the rest of a 100-award batch together.
        let pattern = postgresText.split(maxSplits: 1, whereSeparator: { $0 == " " || $0 == "T" })
        guard pattern.count == 2 else { throw PostgresDecodingError(type: "Date", text: postgresText) }
        let day = try LocalDate(postgresText: String(pattern[0]))
        var time = Substring(pattern[1])
        var offsetSeconds = 0
        if let sign = time.lastIndex(where: { $0 == "+" || $0 == "-" }) {
            let offset = time[time.index(after: sign)...].split(separator: ":").compactMap { Int($0) }
            let magnitude = (offset.first ?? 0) * 3600 + (offset.dropFirst().first ?? 0) * 60
            offsetSeconds = time[sign] == "+" ? magnitude : -magnitude
            time = time[..<sign]
        }
        let clock = time.split(separator: ":")
        guard clock.count == 3, let hour = Int(clock[0]), let minute = Int(clock[1]), let second = Double(clock[2]) else {
            throw PostgresDecodingError(type: "Date", text: postgresText)
        }
        let days = Double(day.daysSinceEpoch)
        let interval = days * 86400 + Double(hour * 3600 + minute * 60) + second - Double(offsetSeconds)
        self = Date(timeIntervalSince1970: interval)
    }
}

/// A calendar day without time or zone: PostgreSQL `date`.
public struct LocalDate: Sendable, Hashable, Comparable, CustomStringConvertible, PostgresEncodable, PostgresDecodable {
    public var year: Int
    public var month: Int
    public var day: Int

    public init(year: Int, month: Int, day: Int) {
        self.year = year
        self.month = month
        self.day = day
    }

    public var description: String {
        // Years 0–9999, every date a user has: written straight into the string's own storage
        // (ten bytes, inline, no allocation) rather than through a growing byte array.
        if (0...9999).contains(year), (1...12).contains(month), (1...31).contains(day) {
            return String(unsafeUninitializedCapacity: 10) { bytes in
                func put(_ value: Int, digits: Int, at start: Int) {
                    var value = value
                    for offset in stride(from: digits - 1, through: 0, by: -1) {
                        bytes[start + offset] = UInt8(ascii: "0") + UInt8(value % 10)
                        value /= 10
                    }
                }
                put(year, digits: 4, at: 0)
                bytes[4] = UInt8(ascii: "-")
                put(month, digits: 2, at: 5)
                bytes[7] = UInt8(ascii: "-")
                put(day, digits: 2, at: 8)
                return 10
            }
        }
        var text = [UInt8]()
        if year < 0 { text.append(UInt8(ascii: "-")) }
        appendPadded(abs(year), width: 4, to: &text)
        text.append(UInt8(ascii: "-"))
        appendPadded(month, width: 2, to: &text)
        text.append(UInt8(ascii: "-"))
        appendPadded(day, width: 2, to: &text)
        return String(decoding: text, as: UTF8.self)
    }
    public var postgresText: String { description }

    public init(postgresText: String) throws {
        // PostgreSQL's ISO form, read byte by byte: splitting the string cost 1.5% of a
        // dashboard call. Other forms (years past 9999) take the general path below.
        var text = postgresText
        let fast: LocalDate? = text.withUTF8 { bytes in
            guard bytes.count == 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-") else { return nil }
            func number(_ range: Range<Int>) -> Int? {
                var value = 0
                for index in range {
                    let digit = bytes[index] &- UInt8(ascii: "0")
                    guard digit < 10 else { return nil }
                    value = value * 10 + Int(digit)
                }
                return value
            }
            guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10) else { return nil }
            return LocalDate(year: year, month: month, day: day)
        }
        if let fast, (1...12).contains(fast.month), (1...31).contains(fast.day) {
            self = fast
            return
        }
        let parts = postgresText.split(separator: "-").compactMap { Int($0) }
        guard parts.count == 3, (1...12).contains(parts[1]), (1...31).contains(parts[2]) else {
            throw PostgresDecodingError(type: "LocalDate", text: postgresText)
        }
        self.init(year: parts[0], month: parts[1], day: parts[2])
    }

    /// Days since 1970-01-01 (proleptic Gregorian), for arithmetic and ordering.
    public var daysSinceEpoch: Int {
        // Howard Hinnant's days_from_civil.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    /// The date `days` after 1970-01-01 (Howard Hinnant's civil_from_days).
    public init(daysSinceEpoch days: Int) {
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        self.init(year: yoe + era * 400 + (month <= 2 ? 1 : 0), month: month, day: day)
    }

    /// The Monday (UTC) of the week holding `instant`: the weekly leaderboards' periods.
    public static func weekStart(of instant: Date) -> LocalDate {
        let days = Int((instant.timeIntervalSince1970 / 86_400).rounded(.down))
        // 1970-01-01 was a Thursday, three days after a Monday.
        let sinceMonday = ((days + 3) % 7 + 7) % 7
        return LocalDate(daysSinceEpoch: days - sinceMonday)
    }

    /// Monday is 0, Sunday 6.
    public var weekday: Int { ((daysSinceEpoch + 3) % 7 + 7) % 7 }

    public static func < (lhs: LocalDate, rhs: LocalDate) -> Bool { lhs.daysSinceEpoch < rhs.daysSinceEpoch }
}

/// A `jsonb` value, kept as its JSON text.
public struct JSONB: Sendable, Hashable, PostgresEncodable, PostgresDecodable {
    public var json: String
    public init(json: String) { self.json = json }
    public var postgresText: String { json }
    public init(postgresText: String) { json = postgresText }
}

/// An `inet` address, kept as text (`192.0.2.1`, `2001:db8::1`).
public struct InetAddress: Sendable, Hashable, PostgresEncodable, PostgresDecodable {
    public var address: String
    public init(_ address: String) { self.address = address }
    public var postgresText: String { address }
    public init(postgresText: String) { address = postgresText }
}

/// `bytea`, sent and read in hex format (`\x0a0b`).
public struct Bytes: Sendable, Hashable, PostgresEncodable, PostgresDecodable {
    public var bytes: [UInt8]
    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public var postgresText: String {
        "\\x" + Crypto.hex(bytes)
    }
    public init(postgresText: String) throws {
        guard postgresText.hasPrefix("\\x"), postgresText.count % 2 == 0 else {
            throw PostgresDecodingError(type: "Bytes", text: postgresText)
        }
        var bytes: [UInt8] = []
        var index = postgresText.index(postgresText.startIndex, offsetBy: 2)
        while index < postgresText.endIndex {
            let next = postgresText.index(index, offsetBy: 2)
            guard let byte = UInt8(postgresText[index..<next], radix: 16) else {
                throw PostgresDecodingError(type: "Bytes", text: postgresText)
            }
            bytes.append(byte)
            index = next
        }
        self.bytes = bytes
    }
}

/// One-dimensional arrays of text-encodable elements (`text[]`, `int8[]`, `uuid[]`).
extension Array: PostgresEncodable where Element: PostgresEncodable {
    public var postgresText: String {
        "{" + map { element in
            let text = element.postgresText
            let escaped = text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            return "\"\(escaped)\""
        }.joined(separator: ",") + "}"
    }
}

extension Array: PostgresDecodable where Element: PostgresDecodable {
    public init(postgresText: String) throws {
        guard postgresText.hasPrefix("{"), postgresText.hasSuffix("}") else {
            throw PostgresDecodingError(type: "Array", text: postgresText)
        }
        var elements: [Element] = []
        var current = ""
        var quoted = false
        var escaped = false
        var sawQuotes = false
        for character in postgresText.dropFirst().dropLast() {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == "\"" {
                quoted.toggle()
                sawQuotes = true
            } else if character == ",", !quoted {
                if current == "NULL", !sawQuotes { throw PostgresDecodingError(type: "Array element", text: "NULL") }
                elements.append(try Element(postgresText: current))
                current = ""
                sawQuotes = false
            } else {
                current.append(character)
            }
        }
        if !current.isEmpty || sawQuotes { elements.append(try Element(postgresText: current)) }
        self = elements
    }
}
