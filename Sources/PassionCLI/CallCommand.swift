import ArgumentParser
import Foundation
import NIOCore
import PassionClient
import PassionJSON
import SwiftProtobuf

/// `passion call SERVICE/METHOD -d JSON`: one call with JSON in and out (protobuf JSON
/// mapping). Streams take and print newline-delimited JSON.
struct CallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call", abstract: "Call a method with JSON; print the response as JSON.")

    @OptionGroup var options: ClientOptions

    @Argument(help: "The method, for example passion.v1.Diagnostics/Echo.")
    var method: String

    @Option(name: .shortAndLong, help: "Request JSON, @FILE, or @- for stdin; one JSON object per line for client streams (from stdin, each line is sent as it is read).")
    var data: String = "{}"

    @Flag(name: .shortAndLong, help: "Print the response headers and trailers on stderr, empty or not.")
    var verbose = false

    @Flag(name: .customLong("emit-defaults"), help: "Print fields that hold their default value (0, \"\", false, the first enum value, [] and {}).")
    var emitDefaults = false

    @Flag(name: .customLong("format-error"), help: "Print a failed call's status as one JSON object on stderr.")
    var formatError = false

    func run() async throws {
        // A syntax error is a usage error even before the server is reached.
        if !data.hasPrefix("@"), case .failure(let error) = Result(catching: { try StrictJSONCheck.lines(data) }) { throw error }
        let started = ContinuousClock.now
        do {
            let connection = try await options.connect()
            defer { Task { await connection.close() } }
            let schema = try await DynamicMethod.resolve(
                method, connection: connection, options: try options.callOptions(since: started), emitDefaults: emitDefaults)
            if verbose { FileHandle.standardError.write(Data("Resolved \(schema.descriptor.fullName) from \(schema.source)\n".utf8)) }
            let streaming = !schema.descriptor.kind.isSingleRequest
            let requests: RequestSource =
                streaming && data == "@-"
                ? .lines(RequestInput.stdinMessages { try schema.request($0, line: $1) })
                : .fixed(try RequestInput.documents(from: data, streaming: streaming).enumerated().map { position, json in
                    try schema.request(json, line: streaming ? position + 1 : nil)
                })
            var callOptions = try options.callOptions(since: started)
            // Every call carries a trace (the caller's own -H traceparent wins): the server's log
            // lines, error details and SQL comments then name it, and -v prints it.
            let trace: TraceContext?
            if let given = callOptions.metadata[TraceContext.metadataKey] {
                trace = TraceContext(traceparent: given)  // sent as given, even when malformed
            } else {
                let generated = TraceContext.random()
                callOptions.metadata.add(TraceContext.metadataKey, generated.traceparent)
                trace = generated
            }
            if verbose { FileHandle.standardError.write(Data("Trace ID: \(trace?.traceIDHex ?? "(none: malformed traceparent)")\n".utf8)) }
            try await perform(schema, requests: requests, connection: connection, callOptions: callOptions)
        } catch let exit as ExitCode {
            throw exit
        } catch let usage as ValidationError {
            throw usage
        } catch {
            throw Failure.exit(error, json: formatError)
        }
    }

    private func perform(
        _ schema: DynamicMethod, requests: RequestSource, connection: ClientConnection, callOptions: CallOptions
    ) async throws {
        let descriptor = schema.descriptor
        let printer = ResponsePrinter(schema: schema)
        switch descriptor.kind {
        case .unary:
            let response = try await connection.unary(descriptor, request: try await requests.first(), options: callOptions)
            try printer.print(response.message)
            report(response.initialMetadata, response.trailingMetadata)
        case .serverStreaming:
            let response = try await connection.serverStreaming(descriptor, request: try await requests.first(), options: callOptions)
            for try await message in response.messages { try printer.print(message) }
            let trailers = try await response.trailers
            report(trailers.initialMetadata, trailers.trailingMetadata)
        case .clientStreaming:
            let response = try await connection.clientStreaming(descriptor, options: callOptions) { writer in
                try await requests.forEach { try await writer.write($0) }
            }
            try printer.print(response.message)
            report(response.initialMetadata, response.trailingMetadata)
        case .bidirectional:
            // Responses print while requests are still being read and sent.
            let printing = try await connection.bidirectional(descriptor, options: callOptions) { writer, response in
                let printing = Task {
                    for try await message in response.messages { try printer.print(message) }
                    return try await response.trailers
                }
                try await requests.forEach { try await writer.write($0) }
                return printing
            }
            let trailers = try await printing.value
            report(trailers.initialMetadata, trailers.trailingMetadata)
        }
    }

    /// grpcurl's `-v` sections: both always printed, so scripts can rely on them.
    private func report(_ initial: Metadata, _ trailing: Metadata) {
        guard verbose else { return }
        func section(_ title: String, _ metadata: Metadata) -> String {
            var text = "\n\(title):\n"
            if metadata.isEmpty { text += "(empty)\n" }
            for entry in metadata { text += "\(entry.key): \(entry.stringValue ?? "<binary>")\n" }
            return text
        }
        let text = section("Response headers received", initial) + section("Response trailers received", trailing)
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// Prints response messages as protobuf JSON, one object per line, each written as it arrives
/// (no stdio buffer), also into a pipe or a file (`passion call …/Subscribe > file`).
struct ResponsePrinter: Sendable {
    let schema: DynamicMethod

    func print(_ bytes: ByteBuffer) throws {
        FileHandle.standardOutput.write(Data((try schema.responseJSON(bytes) + "\n").utf8))
    }
}

/// Checks JSON syntax before anything is sent: the whole text, or (streams) each line.
enum StrictJSONCheck {
    static func lines(_ text: String) throws {
        guard (try? StrictJSON.parse(Array(text.utf8))) == nil else { return }
        for (number, line) in text.split(whereSeparator: \.isNewline).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            do {
                _ = try StrictJSON.parse(Array(line.utf8))
            } catch {
                throw ValidationError("request is not valid JSON (line \(number + 1)): \(error)")
            }
        }
    }
}

/// The requests of a call: given up front, or read from stdin line by line while the call runs.
enum RequestSource: Sendable {
    case fixed([ByteBuffer])
    case lines(AsyncThrowingStream<ByteBuffer, any Error>)

    func first() async throws -> ByteBuffer {
        switch self {
        case .fixed(let messages): return messages.first ?? ByteBuffer()
        case .lines(let stream):
            for try await message in stream { return message }
            return ByteBuffer()
        }
    }

    func forEach(_ body: (ByteBuffer) async throws -> Void) async throws {
        switch self {
        case .fixed(let messages):
            for message in messages { try await body(message) }
        case .lines(let stream):
            for try await message in stream { try await body(message) }
        }
    }
}

/// Turns `-d` into serialized request messages.
enum RequestInput {
    /// The JSON documents of `-d`: the whole text, or (streams) one per non-empty line.
    static func documents(from data: String, streaming: Bool) throws -> [String] {
        let text = try self.text(from: data)
        return streaming
            ? text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            : [text]
    }

    static func text(from data: String) throws -> String {
        let text: String
        if data == "@-" {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else if data.hasPrefix("@") {
            let path = String(data.dropFirst())
            guard let contents = FileManager.default.contents(atPath: path) else {
                throw ValidationError("cannot read \(path)")
            }
            text = String(decoding: contents, as: UTF8.self)
        } else {
            text = data
        }
        return text
    }

    /// Typed messages for `bench`, which calls the methods this CLI was built with.
    static func messages(from data: String, type: any SwiftProtobuf.Message.Type, streaming: Bool) throws -> [ByteBuffer] {
        try documents(from: data, streaming: streaming).enumerated().map { index, json in
            try message(json, type: type, line: streaming ? index + 1 : nil)
        }
    }

    static func message(_ json: String, type: any SwiftProtobuf.Message.Type, line: Int?) throws -> ByteBuffer {
        do {
            return try type.init(jsonString: json).serializedBuffer()
        } catch let error as RPCError {
            throw error
        } catch {
            let which = line.map { " (line \($0))" } ?? ""
            throw ValidationError("request\(which) is not valid JSON for \(type.protoMessageName): \(error)")
        }
    }

    /// Stdin's lines as request messages, each as soon as it is read: a dedicated thread blocks
    /// on reading, so the call's tasks never do. A bad line ends the stream with its error.
    static func stdinMessages(
        _ encode: @escaping @Sendable (String, Int) throws -> ByteBuffer
    ) -> AsyncThrowingStream<ByteBuffer, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
        let reader = Thread {
            var number = 0
            while let line = readLine() {
                number += 1
                guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
                do {
                    continuation.yield(try encode(line, number))
                } catch {
                    continuation.finish(throwing: error)
                    return
                }
            }
            continuation.finish()
        }
        reader.start()
        return stream
    }
}
