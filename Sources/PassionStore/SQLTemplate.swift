/// A statement whose text never changes, built once; each call supplies only its binds.
///
/// For the hot reads: a dashboard's statement (over 2 KB, from a subquery and a shared column
/// list) was assembled from its pieces on every call, seven allocations and kilobytes copied,
/// only to be found again, byte for byte, in the connection's prepared-statement cache. A
/// template's text is one string for the life of the process.
///
///     static let byEmail = SQLTemplate(parameters: 2) { p in
///         "SELECT id FROM users WHERE email = \(p[0]) AND org = \(p[1])"
///     }
///     try await pool.read(Self.byEmail.bind(email, org))
///
/// A placeholder may appear any number of times; its value is bound once.
public struct SQLTemplate: Sendable {
    /// The statement's text, with `$1` … `$n` for the values `bind` takes in order.
    public let text: String
    public let parameterCount: Int

    /// Where the call's `n`-th value goes (`p[0]` is `$1`); interpolated like a value.
    public struct Placeholder: Sendable {
        let number: Int
    }

    /// The template's placeholders, by position.
    public struct Placeholders: Sendable {
        let count: Int

        public subscript(position: Int) -> Placeholder {
            precondition((0..<count).contains(position), "placeholder \(position) of a template with \(count) parameters")
            return Placeholder(number: position + 1)
        }
    }

    /// Builds the text once. Placeholders are the only values it may interpolate: a value
    /// would become a bind of the template itself, the same on every call.
    public init(parameters count: Int, _ build: (Placeholders) -> SQL) {
        let sql = build(Placeholders(count: count))
        precondition(sql.parameters.isEmpty, "a template interpolates placeholders, not values: \(sql.text)")
        text = sql.text
        parameterCount = count
    }

    /// The statement with this call's values, in placeholder order; nil is SQL NULL.
    /// A pack rather than a variadic list: no array of boxed values per call before the binds.
    public func bind<each Value: PostgresEncodable>(_ values: repeat (each Value)?) -> SQL {
        var parameters: [String?] = []
        parameters.reserveCapacity(parameterCount)
        for value in repeat each values { parameters.append(value?.postgresText) }
        precondition(parameters.count == parameterCount, "\(parameters.count) values for a template with \(parameterCount) parameters")
        return SQL(text: text, parameters: parameters)
    }
}

extension SQL.Interpolation {
    /// A template's placeholder: `$n` in the text, no bind of its own.
    public mutating func appendInterpolation(_ placeholder: SQLTemplate.Placeholder) {
        appendInterpolation(unsafeSQL: Self.placeholder(placeholder.number))
    }
}
