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

    @Option(name: .shortAndLong, help: "Request JSON, @FILE, or @- for stdin; one JSON object per line for client streams.")
    var data: String = "{}"

    @Flag(name: .shortAndLong, help: "Print response headers and trailers on stderr.")
    var verbose = false

    func run() async throws {
        let schema = try MethodLookup.schema(method)
        let requests = try RequestInput.messages(from: data, type: schema.requestType, streaming: !schema.descriptor.kind.isSingleRequest)
        do {
            let connection = try await options.connect()
            defer { Task { await connection.close() } }
            try await perform(schema, requests: requests, connection: connection, callOptions: try options.callOptions())
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw Failure.exit(error)
        }
    }

    private func perform(
        _ schema: MethodSchema, requests: [ByteBuffer], connection: ClientConnection, callOptions: CallOptions
    ) async throws {
        let descriptor = schema.descriptor
        switch descriptor.kind {
        case .unary:
            let response = try await connection.unary(descriptor, request: requests.first ?? ByteBuffer(), options: callOptions)
            try printJSON(response.message, as: schema.responseType)
            report(response.initialMetadata, response.trailingMetadata)
        case .serverStreaming:
            let response = try await connection.serverStreaming(descriptor, request: requests.first ?? ByteBuffer(), options: callOptions)
            for try await message in response.messages { try printJSON(message, as: schema.responseType) }
            let trailers = try await response.trailers
            report(trailers.initialMetadata, trailers.trailingMetadata)
        case .clientStreaming:
            let response = try await connection.clientStreaming(descriptor, options: callOptions) { writer in
                for request in requests { try await writer.write(request) }
            }
            try printJSON(response.message, as: schema.responseType)
            report(response.initialMetadata, response.trailingMetadata)
        case .bidirectional:
            let responseType = schema.responseType
            let trailers = try await connection.bidirectional(descriptor, options: callOptions) { writer, response in
                for request in requests { try await writer.write(request) }
                return response
            }
            for try await message in trailers.messages { try printJSON(message, as: responseType) }
            let metadata = try await trailers.trailers
            report(metadata.initialMetadata, metadata.trailingMetadata)
        }
    }

    private func printJSON(_ bytes: ByteBuffer, as type: any SwiftProtobuf.Message.Type) throws {
        let message = try type.init(buffer: bytes)
        print(try message.jsonString())
    }

    private func report(_ initial: Metadata, _ trailing: Metadata) {
        guard verbose else { return }
        var text = ""
        for entry in initial { text += "header \(entry.key): \(entry.stringValue ?? "<binary>")\n" }
        for entry in trailing { text += "trailer \(entry.key): \(entry.stringValue ?? "<binary>")\n" }
        FileHandle.standardError.write(Data(text.utf8))
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
            do {
                return try type.init(jsonString: json).serializedBuffer()
            } catch let error as RPCError {
                throw error
            } catch {
                let which = streaming ? " (line \(index + 1))" : ""
                throw ValidationError("request\(which) is not valid JSON for \(type.protoMessageName): \(error)")
            }
        }
    }
}
