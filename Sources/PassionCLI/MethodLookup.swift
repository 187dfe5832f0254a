import Foundation
import ArgumentParser
import PassionClient

/// Finds a method's schema from the forms people type: `passion.v1.Diagnostics/Echo`,
/// `passion.v1.Diagnostics.Echo` or `Diagnostics/Echo`.
enum MethodLookup {
    static func schema(_ name: String) throws -> MethodSchema {
        let normalized = name.replacingOccurrences(of: "/", with: ".")
        let matches = PassionCatalog.schemas.filter { schema in
            let full = "\(schema.descriptor.service).\(schema.descriptor.method)"
            return full == normalized || full.hasSuffix("." + normalized)
        }
        guard let match = matches.first else {
            throw ValidationError("unknown method \(name); `passion list` shows the services")
        }
        guard matches.count == 1 else {
            throw ValidationError("\(name) is ambiguous: \(matches.map(\.descriptor.fullName).joined(separator: ", "))")
        }
        return match
    }
}
