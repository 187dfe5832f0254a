import ArgumentParser
import Foundation
import PassionClient

/// Options every subcommand shares: where the server is, how to trust it, what to send along.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: "Server address as HOST:PORT.")
    var server: String = "127.0.0.1:7443"

    @Option(name: .long, help: "PEM file of CAs to trust (default: <data-dir>/tls/ca.pem if present, else the system's).")
    var ca: String?

    @Option(name: .customLong("data-dir"), help: "The server's data directory, to find its development CA.")
    var dataDirectory: String = "./.passion"

    @Option(name: .long, help: "Client certificate (PEM) for mTLS.")
    var cert: String?

    @Option(name: .long, help: "Private key (PEM) of --cert.")
    var key: String?

    @Option(name: [.customShort("H"), .customLong("header")], help: "Metadata 'key: value' to send; repeatable.")
    var header: [String] = []

    @Option(name: .long, help: "Bearer token, sent as 'authorization: Bearer TOKEN'.")
    var token: String?

    @Option(name: .customLong("service-key"), help: "Service key, or a file holding one (such as <data-dir>/dev-service-key); sent as 'authorization: ServiceKey KEY'.")
    var serviceKey: String?

    @Option(name: .customLong("as-user"), help: "With --service-key: the user id to act for.")
    var asUser: String?

    @Option(name: .long, help: "Deadline of each call, such as 500ms, 5s or 2m.")
    var deadline: String?

    @Option(name: .customLong("connect-timeout"), help: "Limit for connecting and the TLS and HELLO handshakes, such as 3s (default 10s; --deadline also bounds it).")
    var connectTimeout: String?

    @Option(name: .long, help: "Name to send (SNI) and to verify in the server's certificate, when it differs from the --server host.")
    var servername: String?

    @Flag(name: .long, help: "Do not verify the server's certificate (testing only: anyone in between can read and change the calls).")
    var insecure = false

    @Option(name: .customLong("max-msg-size"), help: "Largest response message accepted, in bytes (default 4194304).")
    var maxMessageSize: Int?

    @Flag(name: .long, help: "Connect without TLS (the server must run with --plaintext).")
    var plaintext = false

    @Flag(name: .customLong("tls12"), help: "Allow TLS 1.2 as well as 1.3.")
    var allowTLS12 = false

    func validate() throws {
        _ = try hostAndPort()
        if let deadline { _ = try Self.parseDuration(deadline) }
        if let connectTimeout, try Self.parseDuration(connectTimeout) <= .zero {
            throw ValidationError("--connect-timeout must be above zero")
        }
        if let maxMessageSize, !(1...(1 << 30)).contains(maxMessageSize) {
            throw ValidationError("--max-msg-size must be 1–1073741824 bytes")
        }
        if plaintext, insecure || servername != nil { throw ValidationError("--insecure and --servername are TLS options; --plaintext has no TLS") }
        for entry in header { _ = try Self.parseHeader(entry) }
        if (cert == nil) != (key == nil) { throw ValidationError("--cert and --key go together") }
        if token != nil, serviceKey != nil { throw ValidationError("--token and --service-key are two identities: give one") }
        // A template ({{seq:N}}) is for bench, which fills it per call.
        if let asUser, UUID(uuidString: asUser) == nil, !asUser.contains("{{") {
            throw ValidationError("--as-user must be a user id (UUID)")
        }
        if let serviceKey { _ = try Self.readServiceKey(serviceKey) }
    }

    /// A key given inline, or read from a file when the argument names one.
    static func readServiceKey(_ argument: String) throws -> String {
        guard FileManager.default.fileExists(atPath: argument) else { return argument }
        guard let text = try? String(contentsOfFile: argument, encoding: .utf8) else {
            throw ValidationError("cannot read the service key file \(argument)")
        }
        let key = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !key.isEmpty, !key.contains(where: \.isWhitespace) else {
            throw ValidationError("\(argument) does not hold a service key")
        }
        return key
    }

    func hostAndPort() throws -> (String, Int) {
        guard let colon = server.lastIndex(of: ":"), let port = Int(server[server.index(after: colon)...]),
            (1...65535).contains(port)
        else { throw ValidationError("--server must be HOST:PORT, got \(server)") }
        var host = String(server[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    var trustRoots: String? {
        if let ca { return ca }
        let development = dataDirectory + "/tls/ca.pem"
        return FileManager.default.fileExists(atPath: development) ? development : nil
    }

    func connectionConfiguration() throws -> ClientConnectionConfiguration {
        let (host, port) = try hostAndPort()
        var tls: TLSConfiguration? =
            plaintext
            ? nil
            : .client(
                serverHostname: servername ?? host, trustRootsPath: trustRoots, certificateChainPath: cert, privateKeyPath: key,
                minimumVersion: allowTLS12 ? .tls12 : .tls13)
        if insecure { tls?.verifyPeer = false }
        var configuration = ClientConnectionConfiguration(host: host, port: port, tls: tls)
        // The deadline covers connecting too: a call given 2 s does not wait 10 s for a handshake.
        let limits = [try connectTimeout.map(Self.parseDuration), try deadline.map(Self.parseDuration)].compactMap { $0 }
        if let limit = limits.min() { configuration.connectTimeout = limit }
        if let maxMessageSize { configuration.settings.maxMessageSize = maxMessageSize }
        return configuration
    }

    func connect() async throws -> ClientConnection {
        if insecure {
            FileHandle.standardError.write(Data("warning: --insecure: the server's certificate is not verified\n".utf8))
        }
        let started = ContinuousClock.now
        do {
            return try await ClientConnection.connect(try connectionConfiguration())
        } catch let error as RPCError {
            // Connecting used up the call's whole deadline: that is the call's deadline failing.
            if let deadline = try deadline.map(Self.parseDuration), ContinuousClock.now - started >= deadline {
                throw RPCError(code: .deadlineExceeded, message: "deadline of \(deadline) exceeded while connecting (\(error.message))")
            }
            throw error
        }
    }

    /// `callOptions()` for a call starting now, `started` being when the command began: the
    /// deadline is what is left of it after connecting.
    func callOptions(since started: ContinuousClock.Instant) throws -> CallOptions {
        var options = try callOptions()
        if let deadline = options.timeout {
            let left = deadline - (ContinuousClock.now - started)
            guard left > .zero else { throw RPCError(code: .deadlineExceeded, message: "deadline of \(deadline) exceeded before the call started") }
            options.timeout = left
        }
        return options
    }

    func callOptions() throws -> CallOptions {
        var metadata = Metadata()
        for entry in header {
            let (key, value) = try Self.parseHeader(entry)
            metadata.add(key, value)
        }
        if let token { metadata.add("authorization", "Bearer \(token)") }
        if let serviceKey { metadata.add("authorization", "ServiceKey \(try Self.readServiceKey(serviceKey))") }
        if let asUser { metadata.add("as-user", asUser) }
        if metadata["user-agent"] == nil { metadata.add("user-agent", "passion-cli/1") }
        return CallOptions(timeout: try deadline.map(Self.parseDuration), metadata: metadata)
    }

    static func parseHeader(_ entry: String) throws -> (String, String) {
        guard let colon = entry.firstIndex(of: ":") else {
            throw ValidationError("-H takes 'key: value', got \(entry)")
        }
        let key = entry[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
        let value = entry[entry.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        guard Metadata.isValidKey(key) else { throw ValidationError("invalid metadata key \(key)") }
        return (key, value)
    }

    /// Parses `250ms`, `10s`, `2m`, `1h` or a bare number of seconds.
    static func parseDuration(_ text: String) throws -> Duration {
        let units: [(String, Double)] = [("ms", 0.001), ("us", 0.000_001), ("s", 1), ("m", 60), ("h", 3600)]
        // A year bounds every duration the CLI takes and keeps "inf" or 1e300 from trapping.
        func nanoseconds(_ value: Double?, _ scale: Double) -> Duration? {
            guard let value, value >= 0, value * scale <= 366 * 86_400 else { return nil }
            return .nanoseconds(Int64(value * scale * 1e9))
        }
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            if let parsed = nanoseconds(Double(text.dropLast(suffix.count)), scale) { return parsed }
        }
        if let parsed = nanoseconds(Double(text), 1) { return parsed }
        throw ValidationError("invalid duration \(text): use forms like 500ms, 10s, 2m (at most a year)")
    }
}

/// Prints a failed call the way scripts expect and exits with 64 + its status code.
enum Failure {
    /// `json`: one JSON object on stderr (`--format-error`) instead of text.
    static func exit(_ error: any Error, json: Bool = false) -> ExitCode {
        let rpc = error as? RPCError ?? RPCError(code: .unknown, message: "\(error)")
        if json {
            FileHandle.standardError.write(Data((Self.json(rpc) + "\n").utf8))
            return ExitCode(Int32(64 + Int(rpc.code.rawValue)))
        }
        var text = "\(rpc.code.name): \(rpc.message)\n"
        if let details = rpc.details {
            text += "  reason: \(details.reason)\n"
            for (key, value) in details.fields.sorted(by: { $0.key < $1.key }) { text += "  \(key): \(value)\n" }
        }
        for entry in rpc.metadata { text += "  trailer \(entry.key): \(entry.stringValue ?? "<binary>")\n" }
        FileHandle.standardError.write(Data(text.utf8))
        return ExitCode(Int32(64 + Int(rpc.code.rawValue)))
    }
}

extension Failure {
    /// `{"code":5,"name":"NOT_FOUND","message":"…","details":{"reason":"…","fields":{…}},"trailers":{…}}`.
    static func json(_ error: RPCError) -> String {
        var object: [String: Any] = ["code": Int(error.code.rawValue), "name": error.code.name, "message": error.message]
        if let details = error.details { object["details"] = ["reason": details.reason, "fields": details.fields] }
        var trailers: [String: String] = [:]
        for entry in error.metadata { trailers[entry.key] = entry.stringValue ?? "<binary>" }
        if !trailers.isEmpty { object["trailers"] = trailers }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return #"{"code":2,"name":"UNKNOWN","message":"unprintable error"}"#
        }
        return String(decoding: data, as: UTF8.self)
    }
}
