import Foundation
@testable import PassionStore
import Testing

/// Statements built from fragments: every bind keeps its value and gets the number of its place.
@Suite("SQL fragments")
struct SQLTests {
    @Test("a fragment's binds are renumbered after the statement's, in any text around them")
    func renumbered() {
        let fragment: SQL = "(SELECT 'é' || $$x$$ WHERE a = \(1) AND b = \(Optional<String>.none))"
        let statement: SQL = "SELECT \("first"), \("second") FROM \(fragment) WHERE c = \("last")"
        #expect(statement.text == "SELECT $1, $2 FROM (SELECT 'é' || $$x$$ WHERE a = $3 AND b = $4) WHERE c = $5")
        #expect(statement.parameters == ["first", "second", "1", nil, "last"])
        // Ten binds before: two-digit numbers in, two-digit numbers out.
        let many: SQL = "\(0)\(1)\(2)\(3)\(4)\(5)\(6)\(7)\(8)\(9) \(fragment)"
        #expect(many.text.hasSuffix("a = $11 AND b = $12)") && many.parameters.count == 12)
    }

    @Test("binds past the placeholders made once, typed binds and literals between them keep their numbers and order")
    func placeholders() {
        var interpolation = SQL.Interpolation(literalCapacity: 0, interpolationCount: 0)
        interpolation.appendLiteral("VALUES (")
        for n in 1...70 {
            if n > 1 { interpolation.appendLiteral(", ") }
            interpolation.appendInterpolation(Int64(n))
        }
        interpolation.appendLiteral(")")
        let many = SQL(stringInterpolation: interpolation)
        #expect(many.text == "VALUES (" + (1...70).map { "$\($0)" }.joined(separator: ", ") + ")")
        #expect(many.parameters == (1...70).map { "\($0)" })
        let typed: SQL = "SELECT \(Optional("{}"), type: "jsonb"), \(2), \(Optional<String>.none, type: "inet")"
        #expect(typed.text == "SELECT $1::jsonb, $2, $3::inet" && typed.parameters == ["{}", "2", nil])
        let empty: SQL = "\(unsafeSQL: "")"
        #expect(empty.text.isEmpty && empty.parameters.isEmpty)
    }

    @Test("a template's text is built once; placeholders in any order and repeated take each value once; fragments keep them")
    func templates() {
        let fragment = SQLTemplate(parameters: 1) { p in "SELECT \(p[0])" }
        #expect(fragment.text == "SELECT $1" && fragment.parameterCount == 1)
        let template = SQLTemplate(parameters: 3) { p in
            let inner: SQL = "f(\(p[2]), \(p[0]))"
            return "SELECT \(p[1]), \(p[0]), \(inner), \(unsafeSQL: "'$9'"), \(p[1])"
        }
        #expect(template.text == "SELECT $2, $1, f($3, $1), '$9', $2")
        let bound = template.bind("a", Optional<Int>.none, 3)
        #expect(bound.text == template.text && bound.parameters == ["a", nil, "3"])
        let date = SQLTemplate(parameters: 2) { p in "SELECT \(p[0])::uuid, \(p[1])::timestamptz" }
            .bind(UUID(uuidString: "00000000-0000-0000-0000-00000000000A"), Date(timeIntervalSince1970: 0))
        #expect(date.parameters == ["00000000-0000-0000-0000-00000000000a", Date(timeIntervalSince1970: 0).postgresText])
        #expect(SQLTemplate(parameters: 0) { _ in "SELECT 1" }.bind().text == "SELECT 1")
    }

    @Test("a NUL is found anywhere in a value: first, last, alone, in a bridged string; none in the empty one")
    func nulCharacters() {
        for text in ["\u{0}", "a\u{0}", "\u{0}b", String(repeating: "x", count: 300) + "\u{0}" + "y", NSString(string: "bri\u{0}dged") as String] {
            #expect(PostgresConnection.containsNUL(text), "\(text.debugDescription)")
        }
        for text in ["", "plain", "caf\u{E9} \u{1F600}", NSString(string: "bridged") as String] {
            #expect(!PostgresConnection.containsNUL(text), "\(text.debugDescription)")
        }
    }

    @Test("a fragment first in its statement, or without binds, goes in as it is")
    func unchanged() {
        let fragment: SQL = "x = \(7) AND y = \(8)"
        let first: SQL = "\(fragment) AND z = \(9)"
        #expect(first.text == "x = $1 AND y = $2 AND z = $3" && first.parameters == ["7", "8", "9"])
        let constant = SQL(unsafeSQL: "'$1 is text here'")
        let after: SQL = "SELECT \(5), \(constant)"
        #expect(after.text == "SELECT $1, '$1 is text here'" && after.parameters == ["5"])
    }

    @Test("parameters reach libpq as C strings of their exact bytes, NULL as a null pointer, however many")
    func parameterCStrings() {
        let bridged = NSString(string: "bridged from Foundation, not native") as String
        let values: [String?] = ["", nil, "caf\u{E9} \u{1F600}", String(repeating: "x", count: 5_000), "short", bridged, nil]
        let seen = PostgresConnection.withParameters(values) { pointers in pointers.map { $0.map { String(cString: $0) } } }
        #expect(seen == values)
        // Past the stack's share: a bulk statement's thousands of binds.
        let many = (0..<20_000).map { Optional("value \($0)") }
        let manySeen = PostgresConnection.withParameters(many) { pointers in pointers.map { $0.map { String(cString: $0) } } }
        #expect(manySeen == many)
        #expect(PostgresConnection.withParameters([]) { $0.count } == 0)
    }

    @Test("a statement key is the text's bytes: alike at both ends is not equal, canonically equivalent is not equal")
    func statementKeys() {
        let padding = String(repeating: "x", count: 100)
        let alike = ["a", "b", "c"].map { StatementKey(padding + $0 + padding) }
        #expect(Set(alike).count == 3)
        #expect(alike[0] == StatementKey(padding + "a" + padding))
        #expect(alike[0].hashValue == StatementKey(padding + "a" + padding).hashValue)
        // Equal as Strings, different texts to PostgreSQL: of different lengths (é composed or
        // not), and of one length (two marks in either order), which only the bytes tell apart.
        let composed = "SELECT 'caf\u{E9}'"
        let decomposed = "SELECT 'cafe\u{301}'"
        #expect(composed == decomposed)
        #expect(StatementKey(composed) != StatementKey(decomposed))
        let marksOneWay = "SELECT 'a\u{301}\u{316}'"
        let marksOtherWay = "SELECT 'a\u{316}\u{301}'"
        #expect(marksOneWay == marksOtherWay && marksOneWay.utf8.count == marksOtherWay.utf8.count)
        #expect(StatementKey(marksOneWay) != StatementKey(marksOtherWay))
        #expect(StatementKey("") == StatementKey("") && StatementKey("") != StatementKey("x"))
    }
}
