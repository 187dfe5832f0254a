import Foundation
import PassionJSON

/// Where a record reads its fields: a result row's columns, or one object of the JSON document
/// a SQL function returned. A record decodes from either through one initializer, so a goal
/// reads the same from `SELECT g.*` as from inside `passion_goal_complete`'s result.
///
/// The functions that change state return documents because their result is also what they
/// store for an idempotent replay (0012_reward_integrity.sql): a retry answers the stored
/// document itself. Reads return plain columns.
public protocol RecordFields {
    /// The field's value; nil for SQL NULL, JSON null or a member the document leaves out.
    /// Throws when the field does not read as `T`, or a row has no such column.
    func field<T: RecordValue>(_ name: String, as type: T.Type) throws -> T?

    /// A field holding JSON (a `jsonb` column, or a document's member); nil as for `field`.
    func json(_ name: String) throws -> StrictJSON?

    /// How errors name field `name`: with the path of the object it sits in, for documents.
    func path(of name: String) -> String
}

/// A record made from the fields of one row or one document object.
public protocol FieldsDecodable: Sendable {
    init(fields: RecordSource) throws
}

extension FieldsDecodable {
    /// The record in a result row.
    public init(fields row: Row) throws { try self.init(fields: .row(row)) }

    /// The record in one object of a function's result document.
    public init(fields document: DocumentFields) throws { try self.init(fields: .document(document)) }
}

/// The fields a record reads: a concrete type rather than `some RecordFields`, because the
/// records are decoded from another module, where a generic initializer would run unspecialized
/// and look up `Optional<T>`'s metadata for every field (4.7% of the server's CPU on Dashboard).
/// Here every `require`/`optional` is specialized for the two kinds of source.
public enum RecordSource: RecordFields, Sendable {
    case row(Row)
    case document(DocumentFields)

    public func field<T: RecordValue>(_ name: String, as type: T.Type) throws -> T? {
        switch self {
        case .row(let row): try row.field(name, as: type)
        case .document(let document): try document.field(name, as: type)
        }
    }

    public func json(_ name: String) throws -> StrictJSON? {
        switch self {
        case .row(let row): try row.json(name)
        case .document(let document): try document.json(name)
        }
    }

    public func path(of name: String) -> String {
        switch self {
        case .row(let row): row.path(of: name)
        case .document(let document): document.path(of: name)
        }
    }
}

/// A field that is missing, NULL where a value is required, or not of the record's type. Says
/// which field, so that a drifted SQL function is found from the error alone.
public struct RecordDecodingError: Error, Equatable, CustomStringConvertible {
    public var field: String
    public var problem: String

    public init(field: String, problem: String) {
        self.field = field
        self.problem = problem
    }

    public var description: String { "cannot read field \(field) from the database's result: \(problem)" }
}

extension RecordFields {
    /// A field that must hold a value.
    public func require<T: RecordValue>(_ name: String, as type: T.Type = T.self) throws -> T {
        guard let value = try field(name, as: type) else { throw RecordDecodingError(field: path(of: name), problem: "is NULL or missing") }
        return value
    }

    /// A field that may be NULL.
    public func optional<T: RecordValue>(_ name: String, as type: T.Type = T.self) throws -> T? {
        try field(name, as: type)
    }

    /// A field holding one JSON object, read as a record; nil when NULL or missing.
    public func record<T: FieldsDecodable>(_ name: String, as type: T.Type = T.self) throws -> T? {
        guard let value = try json(name) else { return nil }
        return try T(fields: DocumentFields(value, field: path(of: name)))
    }

    /// A field holding one JSON object that must be there.
    public func requireRecord<T: FieldsDecodable>(_ name: String, as type: T.Type = T.self) throws -> T {
        guard let value = try record(name, as: type) else { throw RecordDecodingError(field: path(of: name), problem: "is NULL or missing") }
        return value
    }

    /// A field holding a JSON array of objects, read as records; empty when NULL or missing.
    public func records<T: FieldsDecodable>(_ name: String, as type: T.Type = T.self) throws -> [T] {
        guard let value = try json(name) else { return [] }
        guard case .array(let elements) = value else { throw RecordDecodingError(field: path(of: name), problem: "is not a JSON array") }
        return try elements.enumerated().map { index, element in
            try T(fields: DocumentFields(element, field: "\(path(of: name))[\(index)]"))
        }
    }
}

extension Row: RecordFields {
    public func path(of name: String) -> String { name }

    public func field<T: RecordValue>(_ name: String, as type: T.Type) throws -> T? {
        do {
            return try decode(name, as: type)
        } catch let error as PostgresDecodingError {
            throw RecordDecodingError(field: name, problem: error.type == "column" ? "the result has no such column" : "does not read as \(T.self)")
        }
    }

    public func json(_ name: String) throws -> StrictJSON? {
        guard let text = try field(name, as: String.self) else { return nil }
        do {
            return try StrictJSON.parse(text.utf8)
        } catch {
            throw RecordDecodingError(field: name, problem: "is not JSON: \(error)")
        }
    }
}

/// The members of one JSON object of a function's result document.
public struct DocumentFields: RecordFields, Sendable {
    public let members: [String: StrictJSON]
    /// Where the object sits in its document, for errors (`reward.events[2]`).
    let location: String

    /// `value` must be an object; `field` names it in errors.
    public init(_ value: StrictJSON, field: String = "result") throws {
        guard case .object(let members) = value else { throw RecordDecodingError(field: field, problem: "is not a JSON object") }
        self.members = members
        location = field
    }

    /// Parses a document's text (a `jsonb` result sent as text).
    public init(text: String, field: String = "result") throws {
        let value: StrictJSON
        do {
            value = try StrictJSON.parse(text.utf8)
        } catch {
            throw RecordDecodingError(field: field, problem: "is not JSON: \(error)")
        }
        try self.init(value, field: field)
    }

    public func field<T: RecordValue>(_ name: String, as type: T.Type) throws -> T? {
        guard let value = members[name], value != .null else { return nil }
        do {
            return try T(document: value)
        } catch {
            throw RecordDecodingError(field: path(of: name), problem: "does not read as \(T.self)")
        }
    }

    public func json(_ name: String) throws -> StrictJSON? {
        guard let value = members[name], value != .null else { return nil }
        return value
    }

    /// A nested object's fields; errors inside it name their whole path.
    public func nested(_ name: String) throws -> DocumentFields? {
        try json(name).map { try DocumentFields($0, field: path(of: name)) }
    }

    public func path(of name: String) -> String { location == "result" ? name : location + "." + name }
}

/// A value a record field holds, read from a column's text or from a JSON document's value.
public protocol RecordValue: PostgresDecodable {
    init(document value: StrictJSON) throws
}

extension RecordValue {
    /// A JSON string holding the value's PostgreSQL text: how `to_jsonb` writes text, uuid,
    /// date and timestamptz.
    public init(document value: StrictJSON) throws {
        guard case .string(let text) = value else { throw RecordDecodingError(field: "", problem: "not a JSON string") }
        try self.init(postgresText: text)
    }
}

extension RecordValue where Self: FixedWidthInteger {
    /// A JSON number that is a whole number in range.
    public init(document value: StrictJSON) throws {
        guard case .number(let number) = value, let exact = Self(exactly: number) else {
            throw RecordDecodingError(field: "", problem: "not a whole number in range")
        }
        self = exact
    }
}

extension String: RecordValue {}
extension UUID: RecordValue {}
extension Date: RecordValue {}
extension LocalDate: RecordValue {}
extension Int64: RecordValue {}
extension Int32: RecordValue {}
extension Bytes: RecordValue {}

extension Bool: RecordValue {
    public init(document value: StrictJSON) throws {
        guard case .bool(let bool) = value else { throw RecordDecodingError(field: "", problem: "not a JSON boolean") }
        self = bool
    }
}

extension JSONB: RecordValue {
    /// Any JSON value, kept as its text.
    public init(document value: StrictJSON) {
        self.init(json: value.text)
    }
}
