import Foundation

/// A statement with its parameters, built so that values can never become SQL text:
/// interpolated values turn into `$1`, `$2`, ... binds; only string literals are SQL.
///
///     let sql: SQL = "SELECT id FROM users WHERE email = \(email) AND is_active"
public struct SQL: Sendable, Hashable, ExpressibleByStringInterpolation {
    /// The statement text with `$n` placeholders.
    public private(set) var text: String
    /// Parameter values in text format; nil is SQL NULL.
    public private(set) var parameters: [String?]

    public init(stringLiteral value: String) {
        text = value
        parameters = []
    }

    /// Raw SQL from code, never from input: migrations and statements assembled from constants.
    public init(unsafeSQL text: String) {
        self.text = text
        parameters = []
    }

    /// A template's text with this call's binds (`SQLTemplate.bind`).
    init(text: String, parameters: [String?]) {
        self.text = text
        self.parameters = parameters
    }

    public init(stringInterpolation: Interpolation) {
        text = stringInterpolation.joined()
        parameters = stringInterpolation.parameters
    }

    /// Collects literals as SQL and values as binds.
    ///
    /// The text is kept as pieces and joined once at the end: a statement's fragments (a shared
    /// subquery, a column list) are not counted in `literalCapacity`, and appending them grew a
    /// dashboard's text (over 2 KB) through two reallocations and copies on every call.
    public struct Interpolation: StringInterpolationProtocol {
        private var pieces: [String] = []
        var parameters: [String?] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            pieces.reserveCapacity(interpolationCount * 2 + 1)
            parameters.reserveCapacity(interpolationCount)
        }

        func joined() -> String {
            var text = ""
            text.reserveCapacity(pieces.reduce(0) { $0 + $1.utf8.count })
            for piece in pieces { text += piece }
            return text
        }

        public mutating func appendLiteral(_ literal: String) {
            pieces.append(literal)
        }

        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            parameters.append(value.postgresText)
            pieces.append(Self.placeholder(parameters.count))
        }

        public mutating func appendInterpolation(_ value: (some PostgresEncodable)?) {
            parameters.append(value?.postgresText)
            pieces.append(Self.placeholder(parameters.count))
        }

        /// SQL text from constants in code (a shared column list), never from input.
        public mutating func appendInterpolation(unsafeSQL fragment: String) {
            pieces.append(fragment)
        }

        /// `$1` ... `$64` made once: formatting the number cost every bind a string conversion.
        private static let placeholders = (0...64).map { "$\($0)" }

        static func placeholder(_ number: Int) -> String {
            number < placeholders.count ? placeholders[number] : "$\(number)"
        }

        /// A fragment built the same way (a shared subquery): its binds join this statement's,
        /// renumbered after the ones before it.
        public mutating func appendInterpolation(_ fragment: SQL) {
            let offset = parameters.count
            parameters += fragment.parameters
            // Nothing to renumber: the fragment's binds keep their numbers (a statement that
            // starts with its shared fragment), or it has none (and so no placeholders).
            guard offset > 0, !fragment.parameters.isEmpty else {
                pieces.append(fragment.text)
                return
            }
            // Over UTF-8 bytes: `$` and digits are ASCII, and walking Characters (grapheme
            // breaking) cost 8% of a Dashboard call.
            let bytes = Array(fragment.text.utf8)
            var renumbered: [UInt8] = []
            renumbered.reserveCapacity(bytes.count + 8)
            var index = 0
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                renumbered.append(byte)
                guard byte == UInt8(ascii: "$") else { continue }
                var number = 0
                var digits = 0
                while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]), digits < 9 {
                    number = number * 10 + Int(bytes[index] - UInt8(ascii: "0"))
                    index += 1
                    digits += 1
                }
                if digits > 0 { renumbered += Array(String(number + offset).utf8) }
            }
            pieces.append(String(decoding: renumbered, as: UTF8.self))
        }

        /// A typed bind, for values whose type PostgreSQL cannot infer: `\(value, type: "jsonb")`.
        public mutating func appendInterpolation(_ value: (some PostgresEncodable)?, type: StaticString) {
            parameters.append(value?.postgresText)
            pieces.append(Self.placeholder(parameters.count))
            pieces.append("::")
            pieces.append(type.description)
        }
    }
}

/// A statement's text as the key of a prepared-statement cache. Hashed by its length and its
/// first and last bytes rather than all of them: statements run to kilobytes (a Dashboard's is
/// 2 KB), hashing the whole text on every read cost 1.2% of a call, and texts that share both
/// ends and their length still tell apart by `==`.
struct StatementKey: Hashable {
    let text: String

    init(_ text: String) {
        self.text = text
    }

    /// Byte for byte, as PostgreSQL compares texts: `String`'s `==` would also match texts that
    /// are only canonically equivalent, whose hashes here differ.
    static func == (lhs: StatementKey, rhs: StatementKey) -> Bool {
        guard lhs.text.utf8.count == rhs.text.utf8.count else { return false }
        var left = lhs.text
        var right = rhs.text
        return left.withUTF8 { left in
            right.withUTF8 { right in
                guard let leftStart = left.baseAddress, let rightStart = right.baseAddress else { return true }
                // A template's text is one string: found again in the cache, it is itself.
                return leftStart == rightStart || memcmp(leftStart, rightStart, left.count) == 0
            }
        }
    }

    func hash(into hasher: inout Hasher) {
        // `withUTF8` makes a bridged string's storage contiguous first, so that every key hashes
        // through this one path.
        var text = text
        text.withUTF8 { bytes in
            let raw = UnsafeRawBufferPointer(bytes)
            let ends = 64
            hasher.combine(raw.count)
            guard raw.count > 2 * ends else { return hasher.combine(bytes: raw) }
            hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: raw.prefix(ends)))
            hasher.combine(bytes: UnsafeRawBufferPointer(rebasing: raw.suffix(ends)))
        }
    }
}

/// A prepared statement's name, kept as the C string libpq takes: a `String` handed to a C
/// function is copied into a fresh array on every call, one allocation per read.
struct StatementName: Equatable, Sendable {
    let text: String
    let cString: [CChar]

    init(_ text: String) {
        self.text = text
        cString = Array(text.utf8CString)
    }
}
