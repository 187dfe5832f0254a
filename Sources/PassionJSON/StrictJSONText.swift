extension StrictJSON {
    /// The value as compact JSON text, object members in key order so that equal values print
    /// equally. Integral numbers print without a fraction (PostgreSQL's jsonb and protobuf's
    /// Struct read them alike either way, people read them better so).
    public var text: String {
        var out = ""
        write(to: &out)
        return out
    }

    private func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .number(let value):
            if let integer = Int64(exactly: value) { out += String(integer) } else { out += "\(value)" }
        case .string(let value): out += JSONText.quoted(value)
        case .array(let elements):
            out += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { out += "," }
                element.write(to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { out += "," }
                out += JSONText.quoted(key) + ":"
                members[key]?.write(to: &out)
            }
            out += "}"
        }
    }
}
