import Foundation
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import PassionRPCServer
import PassionStore
import PassionTestSupport
import Testing

/// The CLI's output, error and connection options, run as a process as users run it.
@Suite("Command line: output and connection options", .timeLimit(.minutes(2)))
struct CLIOptionsTests {
    private func passion(_ server: TestServer, _ arguments: [String], ca: Bool = true) async throws -> Executables.Result {
        try await Executables.run(
            "passion", arguments + ["--server", "127.0.0.1:\(server.port)"] + (ca ? ["--ca", server.certificates.caPath] : []))
    }

    @Test("-v prints both metadata sections, empty or not")
    func verboseAndDefaults() async throws {
        try await TestServer.with { server in
            let plain = try await passion(server, ["call", "Diagnostics/Echo", "-d", "{}", "-v"])
            #expect(plain.status == 0, "\(plain.stderr)")
            #expect(plain.stdout == "{}\n")
            #expect(plain.stderr.contains("Response headers received:\n"))
            #expect(plain.stderr.contains("Response trailers received:\n(empty)\n"))
            let headers = try await passion(server, [
                "call", "Diagnostics/Echo", "-d", "{}", "-v", "-H", "x-a: 1",
            ])
            #expect(headers.status == 0)
            #expect(headers.stderr.contains("\nResponse headers received:\n"))
            #expect(headers.stderr.hasPrefix("Resolved passion.v1.Diagnostics/Echo from the server's descriptors\n"))
        }
    }

    @Test("--format-error prints the status as one JSON object: code, name, message, reason and fields")
    func formatError() async throws {
        try await TestServer.with { server in
            let result = try await passion(server, [
                "call", "Diagnostics/Fail", "--format-error",
                "-d", #"{"code": 9, "message": "not enough coins", "reason": "INSUFFICIENT_FUNDS", "fields": {"balance": "40"}}"#,
            ])
            #expect(result.status == 64 + 9)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stderr.utf8)) as? [String: Any], "\(result.stderr)")
            #expect(object["code"] as? Int == 9)
            #expect(object["name"] as? String == "FAILED_PRECONDITION")
            #expect(object["message"] as? String == "not enough coins")
            let details = object["details"] as? [String: Any]
            #expect(details?["reason"] as? String == "INSUFFICIENT_FUNDS")
            #expect((details?["fields"] as? [String: String])?["balance"] == "40")
        }
    }

    @Test("--servername is the name verified; --insecure skips verification with a warning; --max-msg-size limits responses")
    func connectionFlags() async throws {
        try await TestServer.with { server in
            let wrongName = try await passion(server, ["health", "--servername", "other.example"])
            #expect(wrongName.status == 64 + 14, "\(wrongName.stderr)")
            let rightName = try await passion(server, ["health", "--servername", "localhost"])
            #expect(rightName.status == 0, "\(rightName.stderr)")
            let untrusted = try await passion(server, ["health"], ca: false)
            #expect(untrusted.status == 64 + 14)
            let insecure = try await passion(server, ["health", "--insecure"], ca: false)
            #expect(insecure.status == 0, "\(insecure.stderr)")
            #expect(insecure.stderr.contains("warning: --insecure"))
            let limited = try await passion(server, ["call", "Diagnostics/Echo", "-d", #"{"responseSize": 200000}"#, "--max-msg-size", "100000"])
            #expect(limited.status == 64 + 8, "\(limited.stderr)")
            let fits = try await passion(server, ["call", "Diagnostics/Echo", "-d", #"{"responseSize": 90000}"#, "--max-msg-size", "100000"])
            #expect(fits.status == 0, "\(fits.stderr)")
            let bad = try await passion(server, ["health", "--connect-timeout", "0s"])
            #expect(bad.status == 64)
        }
    }

    @Test("--connect-timeout bounds a handshake the server never answers")
    func connectTimeout() async throws {
        // A listener that accepts and never speaks.
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = silent.localAddress?.port ?? 0
        let result = try await Executables.run("passion", ["health", "--server", "127.0.0.1:\(port)", "--connect-timeout", "300ms"])
        #expect(result.status == 64 + 14, "\(result.stderr)")
        #expect(result.stderr.contains("handshake timed out"))
        try await silent.close()
    }

    @Test("streamed responses are written as they arrive, not when the CLI exits")
    func lineBuffered() async throws {
        try await TestServer.with { server in
            let output = try LineFIFO()
            defer {
                output.close()
                output.remove()
            }
            let pid = try Subprocess.spawn(
                Executables.path("passion"),
                ["call", "Health/Watch", "--server", "127.0.0.1:\(server.port)", "--ca", server.certificates.caPath],
                outputPath: output.path, errorPath: output.path + ".err")
            defer { kill(pid, SIGKILL) }
            // Health/Watch never ends: a line read now was written while the stream is open.
            #expect(try await output.readLine().contains("SERVING"))
        }
    }

    @Test("a bidirectional call from stdin sends each line as it is read: the answer comes before the next line")
    func interactiveStdin() async throws {
        try await TestServer.with { server in
            let input = try LineFIFO()
            let output = try LineFIFO()
            defer {
                output.close()
                input.remove()
                output.remove()
            }
            let pid = try Subprocess.spawn(
                Executables.path("passion"),
                ["call", "Diagnostics/EchoStream", "-d", "@-", "--server", "127.0.0.1:\(server.port)", "--ca", server.certificates.caPath],
                inputPath: input.path, outputPath: output.path, errorPath: output.path + ".err")
            input.write(#"{"payload": "b25l"}"#)
            // Stdin is still open: this answer can only come if the line was sent as read.
            #expect(try await output.readLine() == #"{"payload":"b25l"}"#)
            input.write(#"{"payload": "dHdv"}"#)
            #expect(try await output.readLine() == #"{"payload":"dHdv"}"#)
            input.close()
            let status = try await onOwnThread { try Subprocess.wait(pid) }
            #expect(status == 0)
        }
    }
}

/// A FIFO between the test and a child process, read line by line as the child writes (no
/// polling). The test holds it open read-write, so neither side blocks opening it (posix_spawn
/// waits for the child's exec); close-on-exec, so closing it is the child's end of input.
final class LineFIFO: Sendable {
    let path = NSTemporaryDirectory() + "passion-fifo-\(UUID().uuidString)"
    private let descriptor: Int32

    init() throws {
        guard mkfifo(path, 0o600) == 0 else { throw POSIXError(.EIO) }
        descriptor = open(path, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else { throw POSIXError(.EIO) }
    }

    func write(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
    }

    /// The next line, read on a thread of its own (the read blocks until the child writes it).
    /// The test holds a write end itself, so a child that died would never end the read: after
    /// `limit` without a byte it throws instead of hanging the test.
    func readLine(limit: Duration = .seconds(60)) async throws -> String {
        let descriptor = self.descriptor
        let milliseconds = Int32(clamping: limit.components.seconds * 1000 + limit.components.attoseconds / 1_000_000_000_000_000)
        return try await onOwnThread {
            var bytes: [UInt8] = []
            var byte: UInt8 = 0
            while true {
                var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                var polled = poll(&ready, 1, milliseconds)
                while polled == -1, errno == EINTR { polled = poll(&ready, 1, milliseconds) }
                guard polled == 1 else { throw POSIXError(.ETIMEDOUT) }
                guard read(descriptor, &byte, 1) == 1, byte != 0x0A else { break }
                bytes.append(byte)
            }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    func close() {
        Glibc.close(descriptor)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.removeItem(atPath: path + ".err")
    }
}

/// `passion list` and `passion describe` read the server's descriptors and print them as .proto.
@Suite("Command line: list and describe")
struct CLIDescribeTests {
    private func passion(_ server: TestServer, _ arguments: [String]) async throws -> Executables.Result {
        try await Executables.run("passion", arguments + ["--server", "127.0.0.1:\(server.port)", "--ca", server.certificates.caPath])
    }

    @Test("describe prints comments, oneof groups and each method's policy")
    func protoText() async throws {
        try await TestServer.with { server in
            let message = try await passion(server, ["describe", "passion.v1.SubscribeResponse"])
            #expect(message.status == 0, "\(message.stderr)")
            #expect(message.stdout.contains("""
                message SubscribeResponse {
                  oneof item {
                    passion.v1.ProgressEvent event = 1;
                    passion.v1.Heartbeat heartbeat = 2;
                  }
                }
                """), "\(message.stdout)")
            let heartbeat = try await passion(server, ["describe", "passion.v1.Heartbeat"])
            #expect(heartbeat.stdout.contains("// The first heartbeat comes at once, after any catch-up"), "\(heartbeat.stdout)")
            #expect(heartbeat.stdout.contains("  // Where to resume after a reconnect (after_event_id): the last event id sent on this stream,"))
            let service = try await passion(server, ["describe", "passion.v1.Diagnostics"])
            #expect(service.stdout.contains("""
                  rpc Echo(passion.v1.EchoRequest) returns (passion.v1.EchoResponse) {
                    option (passion.v1.policy) = { idempotency: NO_SIDE_EFFECTS, principal: PRINCIPAL_ANYONE };
                  }
                """), "\(service.stdout)")
            #expect(service.stdout.contains("  // Server stream of `count` messages of `size` bytes.\n"))
        }
    }

    @Test("short names work wherever a symbol is asked for; an ambiguous or unknown one is named")
    func shortNames() async throws {
        try await TestServer.with { server in
            let methods = try await passion(server, ["list", "Health"])
            #expect(methods.stdout == "passion.v1.Health/Check\npassion.v1.Health/Watch\n", "\(methods.stderr)")
            let message = try await passion(server, ["describe", "EchoRequest"])
            #expect(message.stdout.contains("message EchoRequest {"), "\(message.stderr)")
            let method = try await passion(server, ["describe", "Diagnostics/Echo"])
            #expect(method.stdout.contains("rpc Echo(passion.v1.EchoRequest)"), "\(method.stderr)")
            let unknown = try await passion(server, ["describe", "NoSuchThing"])
            #expect(unknown.status == 64 + 5)
        }
    }
}

/// `passion call` from the server's descriptors: what a CLI older than the server needs.
@Suite("Command line: calls from the server's schema")
struct CLIDynamicCallTests {
    private func passion(_ server: TestServer, _ arguments: [String]) async throws -> Executables.Result {
        try await Executables.run("passion", arguments + ["--server", "127.0.0.1:\(server.port)", "--ca", server.certificates.caPath])
    }

    @Test("type errors name the field and the JSON expected, and send nothing (exit 64)")
    func typeErrors() async throws {
        try await TestServer.with { server in
            let wrong = try await passion(server, ["call", "Diagnostics/Echo", "-d", #"{"responseSize": "big"}"#])
            #expect(wrong.status == 64)
            #expect(wrong.stderr.contains("field response_size: expected an integer (int32), got a string"), "\(wrong.stderr)")
            let unknown = try await passion(server, ["call", "Diagnostics/Echo", "-d", #"{"respnseSize": 1}"#])
            #expect(unknown.stderr.contains("EchoRequest has no field respnseSize"), "\(unknown.stderr)")
        }
    }

    @Test("--emit-defaults prints fields at their default value")
    func emitDefaults() async throws {
        try await TestServer.with { server in
            let plain = try await passion(server, ["call", "Diagnostics/Echo", "-d", "{}"])
            #expect(plain.stdout == "{}\n")
            let defaults = try await passion(server, ["call", "Diagnostics/Echo", "-d", "{}", "--emit-defaults"])
            #expect(defaults.stdout == "{\"payload\":\"\"}\n", "\(defaults.stderr)")
        }
    }

    @Test("with introspection off, the CLI falls back to the schemas it was built with and says so under -v")
    func fallback() async throws {
        try await TestServer.with(routes: { $0.remove(service: "passion.v1.Introspection") }) { server in
            let result = try await passion(server, ["call", "Diagnostics/Echo", "-d", #"{"payload": "aGk="}"#, "-v"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout == "{\"payload\":\"aGk=\"}\n")
            #expect(result.stderr.contains("the schemas built into this CLI"))
        }
    }
}
