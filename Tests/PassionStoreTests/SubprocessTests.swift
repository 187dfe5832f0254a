import Foundation
import PassionStore
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("Subprocess")
struct SubprocessTests {
    /// A full-suite run failed one time in two: a CLI test's long-lived child held a copy of a
    /// connection another test's server had closed, so that client never saw the close.
    @Test("a child inherits only standard input, output and error, not the parent's sockets and pipes")
    func childInheritsOnlyStandardStreams() throws {
        let socketDescriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(socketDescriptor >= 3)
        defer { close(socketDescriptor) }
        var pipeEnds: [Int32] = [-1, -1]
        #expect(pipe(&pipeEnds) == 0)
        defer { for end in pipeEnds { close(end) } }

        let output = NSTemporaryDirectory() + "passion-subprocess-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: output) }
        // sleep keeps the child alive while its descriptors are listed from outside.
        let pid = try Subprocess.spawn("/bin/sleep", ["60"], outputPath: output)
        defer {
            kill(pid, SIGKILL)
            _ = try? Subprocess.wait(pid)
        }
        let inherited = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").sorted()
        #expect(inherited == ["0", "1", "2"], "the child holds \(inherited)")
    }

    @Test("the exit status is the child's, or 128 + the signal that ended it")
    func exitStatus() throws {
        let output = NSTemporaryDirectory() + "passion-subprocess-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: output) }
        #expect(try Subprocess.run("/bin/sh", ["-c", "exit 3"], outputPath: output) == 3)
        #expect(try Subprocess.run("/bin/sh", ["-c", "kill -TERM $$"], outputPath: output) == 128 + SIGTERM)
    }
}
