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
        // What each descriptor is, not how many: a child still starting may briefly hold a
        // file of its own (the loader opening a library); none may be our socket or pipe.
        func target(_ path: String) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: path) }
        let ours = Set(([socketDescriptor] + pipeEnds).compactMap { target("/proc/self/fd/\($0)") })
        #expect(ours.count == 2)  // the socket, and the pipe (both ends name it)
        let held = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap { target("/proc/\(pid)/fd/\($0)") }
        #expect(ours.isDisjoint(with: held), "the child holds \(held)")
        #expect(held.allSatisfy { !$0.hasPrefix("socket:") && !$0.hasPrefix("pipe:") }, "the child holds \(held)")
    }

    @Test("the exit status is the child's, or 128 + the signal that ended it")
    func exitStatus() throws {
        let output = NSTemporaryDirectory() + "passion-subprocess-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: output) }
        #expect(try Subprocess.run("/bin/sh", ["-c", "exit 3"], outputPath: output) == 3)
        #expect(try Subprocess.run("/bin/sh", ["-c", "kill -TERM $$"], outputPath: output) == 128 + SIGTERM)
    }
}
