import NIOCore
import PassionWire
import SwiftProtobuf

/// Something that carries calls: one `ClientConnection`, or an `RPCClient` pool. Generated
/// client stubs are written against it.
public protocol RPCClientTransport: Sendable {
    func unary(_ method: MethodDescriptor, request: ByteBuffer, options: CallOptions) async throws -> UnaryResponse
    func serverStreaming(_ method: MethodDescriptor, request: ByteBuffer, options: CallOptions) async throws
        -> StreamingResponse
    func clientStreaming(
        _ method: MethodDescriptor, options: CallOptions, requests: @Sendable (MessageWriter) async throws -> Void
    ) async throws -> UnaryResponse
    func bidirectional<Result: Sendable>(
        _ method: MethodDescriptor, options: CallOptions,
        body: @Sendable (MessageWriter, StreamingResponse) async throws -> Result
    ) async throws -> Result
}

/// A typed response with the metadata that came with it.
public struct RPCResponse<Message: SwiftProtobuf.Message & Sendable>: Sendable {
    public var message: Message
    public var initialMetadata: Metadata
    public var trailingMetadata: Metadata
}

extension RPCClientTransport {
    /// A unary call with typed messages, returning the response and its metadata.
    public func unary<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message & Sendable>(
        _ method: MethodDescriptor, _ request: Input, as: Output.Type, options: CallOptions
    ) async throws -> RPCResponse<Output> {
        let response = try await unary(method, request: try request.serializedBuffer(), options: options)
        return RPCResponse(
            message: try Output(buffer: response.message), initialMetadata: response.initialMetadata,
            trailingMetadata: response.trailingMetadata)
    }

    /// A server-streaming call with typed messages.
    public func serverStreaming<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message>(
        _ method: MethodDescriptor, _ request: Input, as: Output.Type, options: CallOptions
    ) async throws -> ResponseStream<Output> {
        ResponseStream(try await serverStreaming(method, request: try request.serializedBuffer(), options: options))
    }

    /// A client-streaming call: `requests` writes the messages; returning from it half-closes.
    public func clientStreaming<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message & Sendable>(
        _ method: MethodDescriptor, as: Output.Type, options: CallOptions,
        requests: @Sendable (RPCRequestWriter<Input>) async throws -> Void
    ) async throws -> RPCResponse<Output> {
        let response = try await clientStreaming(method, options: options) { writer in
            try await requests(RPCRequestWriter(base: writer))
        }
        return RPCResponse(
            message: try Output(buffer: response.message), initialMetadata: response.initialMetadata,
            trailingMetadata: response.trailingMetadata)
    }

    /// A bidirectional call: `body` writes requests and reads responses concurrently as it
    /// likes; returning from it half-closes the request side.
    public func bidirectional<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message, Result: Sendable>(
        _ method: MethodDescriptor, as: Output.Type, options: CallOptions,
        body: @Sendable (RPCRequestWriter<Input>, ResponseStream<Output>) async throws -> Result
    ) async throws -> Result {
        try await bidirectional(method, options: options) { writer, response in
            try await body(RPCRequestWriter(base: writer), ResponseStream(response))
        }
    }
}

/// Writes typed request messages.
public struct RPCRequestWriter<Element: SwiftProtobuf.Message>: Sendable {
    let base: MessageWriter

    /// Sends one message; suspends while the connection cannot take more.
    public func write(_ message: Element, compress: Bool = true) async throws {
        try await base.write(message.serializedBuffer(), compress: compress)
    }
}

/// Typed response messages of a streaming call, then its trailers.
public struct ResponseStream<Element: SwiftProtobuf.Message>: AsyncSequence, Sendable {
    let base: StreamingResponse

    init(_ base: StreamingResponse) {
        self.base = base
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: MessageStream.AsyncIterator

        public mutating func next() async throws -> Element? {
            guard let bytes = try await base.next() else { return nil }
            return try Element(buffer: bytes)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.messages.makeAsyncIterator())
    }

    /// Response metadata, available once the stream ended successfully.
    public var trailers: ResponseTrailers {
        get async throws { try await base.trailers }
    }
}
