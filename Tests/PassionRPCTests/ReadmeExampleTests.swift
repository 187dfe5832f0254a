import Foundation
import Testing

/// README's client-library snippets are quoted from `Examples/client/main.swift`, which CI
/// compiles; this keeps the quotes true.
@Suite("README client example")
struct ReadmeExampleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func text(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// The code lines with indentation removed, so a snippet matches at any nesting; imports
    /// (a snippet shows its own) and the example's section marks are left out.
    static func lines(_ text: some StringProtocol) -> [String] {
        text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("import ") && !$0.hasPrefix("// MARK:") }
    }

    static func swiftBlocks(inSection title: String, of readme: String) -> [String] {
        guard let start = readme.range(of: "## \(title)\n") else { return [] }
        let section = readme[start.upperBound...].components(separatedBy: "\n## ").first ?? ""
        return section.components(separatedBy: "```swift\n").dropFirst().compactMap { $0.components(separatedBy: "```").first }
    }

    @Test("every snippet of 'Using the client library' appears verbatim in the compiled example")
    func snippetsAreQuoted() throws {
        let readme = try Self.text("README.md")
        let example = Self.lines(try Self.text("Examples/client/main.swift"))
        let package = try Self.text("Package.swift")
        let blocks = Self.swiftBlocks(inSection: "Using the client library", of: readme)
        #expect(blocks.count >= 4)
        for block in blocks {
            if block.contains(".package(") {
                // The dependency lines name what Package.swift declares.
                #expect(package.contains(#"name: "passion-rpc""#) && block.contains(#"package: "passion-rpc""#))
                #expect(package.contains(#".library(name: "PassionClient""#) && block.contains(#"name: "PassionClient""#))
                continue
            }
            let quoted = Self.lines(block)
            let found = (0...max(example.count - quoted.count, 0)).contains { Array(example[$0..<min($0 + quoted.count, example.count)]) == quoted }
            #expect(found, "not in Examples/client/main.swift:\n\(block)")
        }
    }
}
