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

    public init(stringInterpolation: Interpolation) {
        text = stringInterpolation.text
        parameters = stringInterpolation.parameters
    }

    /// Collects literals as SQL and values as binds.
    public struct Interpolation: StringInterpolationProtocol {
        var text = ""
        var parameters: [String?] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            text.reserveCapacity(literalCapacity + interpolationCount * 3)
        }

        public mutating func appendLiteral(_ literal: String) {
            text += literal
        }

        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            parameters.append(value.postgresText)
            text += "$\(parameters.count)"
        }

        public mutating func appendInterpolation(_ value: (some PostgresEncodable)?) {
            parameters.append(value?.postgresText)
            text += "$\(parameters.count)"
        }

        /// SQL text from constants in code (a shared column list), never from input.
        public mutating func appendInterpolation(unsafeSQL fragment: String) {
            text += fragment
        }

        /// A fragment built the same way (a shared subquery): its binds join this statement's,
        /// renumbered after the ones before it.
        public mutating func appendInterpolation(_ fragment: SQL) {
            let offset = parameters.count
            parameters += fragment.parameters
            var renumbered = ""
            var characters = fragment.text[...]
            while let dollar = characters.firstIndex(of: "$") {
                renumbered += characters[..<dollar]
                let digits = characters[characters.index(after: dollar)...].prefix { $0.isASCII && $0.isNumber }
                if let number = Int(digits) {
                    renumbered += "$\(number + offset)"
                } else {
                    renumbered += "$"
                }
                characters = characters[characters.index(dollar, offsetBy: 1 + digits.count)...]
            }
            text += renumbered + characters
        }

        /// A typed bind, for values whose type PostgreSQL cannot infer: `\(value, type: "jsonb")`.
        public mutating func appendInterpolation(_ value: (some PostgresEncodable)?, type: StaticString) {
            parameters.append(value?.postgresText)
            text += "$\(parameters.count)::\(type)"
        }
    }
}
