import ArgumentParser
import Foundation
import NIOCore
import PassionClient
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

    @Flag(name: .customLong("format-error"), help: "Print a failed call's status as one JSON object on stderr.")
    var formatError = false

    func run() async throws {
        let schema = try MethodLookup.schema(method)
        let streaming = !schema.descriptor.kind.isSingleRequest
        let requests: RequestSource =
            streaming && data == "@-"
            ? .lines(RequestInput.stdinMessages(type: schema.requestType))
            : .fixed(try RequestInput.messages(from: data, type: schema.requestType, streaming: streaming))
        do {
            let connection = try await options.connect()
            defer { Task { await connection.close() } }
            try await perform(schema, requests: requests, connection: connection, callOptions: try options.callOptions())
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw Failure.exit(error, json: formatError)
        }
    }

    private func perform(
        _ schema: MethodSchema, requests: RequestSource, connection: ClientConnection, callOptions: CallOptions
    ) async throws {
        let descriptor = schema.descriptor
        let printer = ResponsePrinter(type: schema.responseType)
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
    let type: any SwiftProtobuf.Message.Type

    func print(_ bytes: ByteBuffer) throws {
        let message = try type.init(buffer: bytes)
        FileHandle.standardOutput.write(Data((try message.jsonString() + "\n").utf8))
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
    static func messages(from data: String, type: any SwiftProtobuf.Message.Type, streaming: Bool) throws -> [ByteBuffer] {
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
        let documents = streaming
            ? text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            : [text]
        return try documents.enumerated().map { index, json in
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
    static func stdinMessages(type: any SwiftProtobuf.Message.Type) -> AsyncThrowingStream<ByteBuffer, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
        let reader = Thread {
            var number = 0
            while let line = readLine() {
                number += 1
                guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
                do {
                    continuation.yield(try message(line, type: type, line: number))
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
