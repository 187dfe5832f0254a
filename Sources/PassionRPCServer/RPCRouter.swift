import NIOCore
import SwiftProtobuf

/// The untyped form of a handler: messages as bytes. Generated code builds these from typed
/// service protocols.
public enum ServerMethod: Sendable {
    case unary(@Sendable (ByteBuffer, ServerContext) async throws -> ByteBuffer)
    case serverStreaming(@Sendable (ByteBuffer, ServerContext, MessageWriter) async throws -> Void)
    case clientStreaming(@Sendable (MessageStream, ServerContext) async throws -> ByteBuffer)
    case bidirectional(@Sendable (MessageStream, ServerContext, MessageWriter) async throws -> Void)
}

/// A service the server can host: generated service protocols conform through an extension.
public protocol RPCService: Sendable {
    /// Adds every method of the service to `router`.
    func register(with router: inout RPCRouter)
}

/// Maps method names to handlers.
public struct RPCRouter: Sendable {
    struct Route: Sendable {
        var descriptor: MethodDescriptor
        var method: ServerMethod
        /// Set when a server adopts the router, so a call finds its handles without a lookup.
        var metrics: RouteMetrics?
    }

    private(set) var routes: [String: Route] = [:]

    public init() {}

    public init(services: [any RPCService]) {
        for service in services { service.register(with: &self) }
    }

    /// Registers an untyped handler; a second registration of the same method replaces the first.
    public mutating func register(_ descriptor: MethodDescriptor, _ method: ServerMethod) {
        routes[descriptor.fullName] = Route(descriptor: descriptor, method: method)
    }

    /// Every registered method, sorted by full name.
    public var descriptors: [MethodDescriptor] {
        routes.values.map(\.descriptor).sorted { $0.fullName < $1.fullName }
    }

    /// Names of every registered service, sorted.
    public var serviceNames: [String] {
        Array(Set(routes.values.map(\.descriptor.service))).sorted()
    }

    /// Makes every method of `service` require `principal` (and `scope`, nil for none) instead of
    /// what its `.proto` declares: a deployment can close the Diagnostics service to strangers.
    public mutating func require(_ principal: RequiredPrincipal, scope: String? = nil, service: String) {
        for (name, route) in routes where route.descriptor.service == service {
            var restricted = route
            restricted.descriptor.principal = principal
            restricted.descriptor.scope = scope
            routes[name] = restricted
        }
    }

    /// Removes every method of `service`.
    public mutating func remove(service: String) {
        routes = routes.filter { $0.value.descriptor.service != service }
    }

    /// Gives every route its metric handles (before any call, so none is created on the hot path).
    mutating func instrument(with metrics: ServerMetrics) {
        for (name, route) in routes {
            var instrumented = route
            instrumented.metrics = metrics.route(route.descriptor)
            routes[name] = instrumented
        }
    }

    func route(_ fullName: String) -> Route? {
        routes[fullName]
    }

    /// The status for a name that matches no route: unknown service or unknown method.
    func unroutable(_ fullName: String) -> RPCError {
        let service = fullName.split(separator: "/", maxSplits: 1).first.map(String.init) ?? fullName
        if routes.values.contains(where: { $0.descriptor.service == service }) {
            return RPCError(code: .unimplemented, message: "unknown method \(fullName)")
        }
        return RPCError(code: .unimplemented, message: "unknown service \(service)")
    }
}

// MARK: - Typed registration, used by generated code

extension RPCRouter {
    public mutating func registerUnary<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message>(
        _ descriptor: MethodDescriptor, _: Input.Type, _: Output.Type,
        _ handler: @escaping @Sendable (Input, ServerContext) async throws -> Output
    ) {
        register(descriptor, .unary { bytes, context in
            try await handler(try Input(buffer: bytes), context).serializedBuffer()
        })
    }

    public mutating func registerServerStreaming<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message>(
        _ descriptor: MethodDescriptor, _: Input.Type, _: Output.Type,
        _ handler: @escaping @Sendable (Input, ServerContext, RPCWriter<Output>) async throws -> Void
    ) {
        register(descriptor, .serverStreaming { bytes, context, writer in
            try await handler(try Input(buffer: bytes), context, RPCWriter(writer))
        })
    }

    public mutating func registerClientStreaming<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message>(
        _ descriptor: MethodDescriptor, _: Input.Type, _: Output.Type,
        _ handler: @escaping @Sendable (RPCStream<Input>, ServerContext) async throws -> Output
    ) {
        register(descriptor, .clientStreaming { messages, context in
            try await handler(RPCStream(messages), context).serializedBuffer()
        })
    }

    public mutating func registerBidirectional<Input: SwiftProtobuf.Message, Output: SwiftProtobuf.Message>(
        _ descriptor: MethodDescriptor, _: Input.Type, _: Output.Type,
        _ handler: @escaping @Sendable (RPCStream<Input>, ServerContext, RPCWriter<Output>) async throws -> Void
    ) {
        register(descriptor, .bidirectional { messages, context, writer in
            try await handler(RPCStream(messages), context, RPCWriter(writer))
        })
    }
}

/// Typed messages of a stream: decodes each as it is consumed.
public struct RPCStream<Element: SwiftProtobuf.Message>: AsyncSequence, Sendable {
    let base: MessageStream

    public init(_ base: MessageStream) {
        self.base = base
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: MessageStream.AsyncIterator

        // Concurrent like the transport's iterator it wraps (PassionRPC), which it hands itself to.
        @concurrent
        public mutating func next() async throws -> Element? {
            guard let bytes = try await base.next() else { return nil }
            return try Element(buffer: bytes)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator())
    }
}

/// Sends typed messages on a stream.
public struct RPCWriter<Element: SwiftProtobuf.Message>: Sendable {
    let base: MessageWriter

    public init(_ base: MessageWriter) {
        self.base = base
    }

    /// Sends one message; suspends while the connection cannot take more, and throws
    /// CANCELLED once the call has ended.
    /// Sends one message; `compress: false` keeps it uncompressed whatever its size.
    public func write(_ message: Element, compress: Bool = true) async throws {
        try await base.write(message.serializedBuffer(), compress: compress)
    }
}
