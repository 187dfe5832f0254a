import Foundation
@testable import PassionStore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The embedded cluster in a data directory made private (as `mktemp -d` makes them), when the
/// server runs as root and PostgreSQL as `postgres`.
@Suite("Data directory permissions", .enabled(if: getuid() == 0, "the postgres user only matters when running as root"))
struct DataDirectoryTests {
    private func privateDirectory(in parent: String = "/tmp") throws -> String {
        let path = parent + "/passion-dd-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        return path
    }

    private func mode(_ path: String) throws -> Int {
        try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int ?? -1
    }

    @Test("a private data directory (0700) is opened for search only (0701) and the cluster starts")
    func privateDataDirectory() throws {
        let directory = try privateDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try EmbeddedPostgres(dataDirectory: directory, maxConnections: 20)
        try cluster.start()
        defer { try? cluster.stop() }
        #expect(try mode(directory) == 0o701)
        #expect(FileManager.default.fileExists(atPath: cluster.dataDirectory + "/PG_VERSION"))
    }

    @Test("a private parent it was not given is left alone; the error names it and the exact chmod")
    func privateParent() throws {
        let parent = try privateDirectory()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let directory = parent + "/data"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        let cluster = try EmbeddedPostgres(dataDirectory: directory, maxConnections: 20)
        #expect {
            try cluster.start()
        } throws: { error in
            "\(error)".contains("run `chmod o+x \(parent)`, or choose a --data-dir outside it")
        }
        #expect(try mode(parent) == 0o700)
        #expect(!FileManager.default.fileExists(atPath: cluster.dataDirectory + "/PG_VERSION"))
    }

    @Test("ancestors are listed from the top down")
    func ancestors() {
        #expect(EmbeddedPostgres.ancestors(of: "/a/b/c") == ["/a", "/a/b"])
        #expect(EmbeddedPostgres.ancestors(of: "/a").isEmpty)
    }
}
