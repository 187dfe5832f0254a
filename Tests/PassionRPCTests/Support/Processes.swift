import Foundation
import NIOPosix
import PassionStore
import PassionTestSupport
import PassionRPCServer

/// Runs the package's own executables (`passion`, `passion-server`) as a user would.
enum Executables {
    /// The build folder holding the test bundle also holds the executables.
    static func path(_ name: String) -> String {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name).path,
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(".build/debug/\(name)").path,
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs to completion (killed after `timeout`). Output goes through files, not pipes: a
    /// server another test starts at the same moment inherits open pipe ends and would keep them
    /// open, so reading to EOF would never end. The wait runs on a thread of its own, never blocking
    /// the cooperative threads or the shared NIO pool the rest of the suite needs.
    static func run(
        _ name: String, _ arguments: [String], stdin: String? = nil, directory: String? = nil,
        timeout: Duration = .seconds(60)
    ) async throws -> Result {
        let base = NSTemporaryDirectory() + "passion-run-\(UUID().uuidString)"
        let (input, output, errors) = (base + ".in", base + ".out", base + ".err")
        defer { for path in [input, output, errors] { try? FileManager.default.removeItem(atPath: path) } }
        try (stdin ?? "").write(toFile: input, atomically: true, encoding: .utf8)
        let pid = try Subprocess.spawn(
            path(name), withTestDefaults(name, arguments), inputPath: input, outputPath: output, errorPath: errors, directory: directory)
        let killer = Task {
            try await Task.sleep(for: timeout)
            kill(pid, SIGKILL)
        }
        let status = try await onOwnThread { try Subprocess.wait(pid) }
        killer.cancel()
        let stdout = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
        return Result(status: status, stdout: stdout, stderr: stderr)
    }

    /// A `passion-server` started in the background, its output in files.
    struct Server {
        let pid: pid_t
        /// Everything it printed on stdout and stderr.
        let outputPath: String
        let errorPath: String
        /// The "listening on HOST:PORT" line, or what it printed instead when it did not start.
        let firstLine: String

        var port: String {
            firstLine.split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        }

        var log: String { (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "" }

        /// SIGTERM, then its exit status.
        func stop() async throws -> Int32 {
            kill(pid, SIGTERM)
            return try await onOwnThread { try Subprocess.wait(pid) }
        }
    }

    /// Starts `passion-server` in `directory` and waits (polling, never blocking a thread) until
    /// it prints its first line or exits.
    /// Servers started by tests run side by side: each takes a free port for its metrics
    /// listener unless the test names one.
    static func withTestDefaults(_ name: String, _ arguments: [String]) -> [String] {
        guard name == "passion-server", !arguments.contains("--metrics-address") else { return arguments }
        return arguments + ["--metrics-address", "127.0.0.1:0"]
    }

    static func startServer(_ arguments: [String], directory: String, timeout: Duration = .seconds(120)) async throws -> Server {
        let output = directory + "/server-\(UUID().uuidString.prefix(6)).out"
        let errors = directory + "/server-\(UUID().uuidString.prefix(6)).err"
        let pid = try Subprocess.spawn(
            path("passion-server"), withTestDefaults("passion-server", arguments), outputPath: output, errorPath: errors, directory: directory)
        let deadline = ContinuousClock.now + timeout
        var line = ""
        while ContinuousClock.now < deadline {
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            if let newline = text.firstIndex(of: "\n") {
                line = String(text[..<newline])
                break
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                line = "exited before listening: " + ((try? String(contentsOfFile: errors, encoding: .utf8)) ?? "")
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return Server(pid: pid, outputPath: output, errorPath: errors, firstLine: line)
    }
}
