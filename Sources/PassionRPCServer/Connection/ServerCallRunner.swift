import NIOCore
import Tracing
import PassionTLS
import PassionWire

/// What runs one call's handler: a task that authenticates at once (on the CALL, before any
/// request is waited for), then takes its request and runs the handler. Confined to its
/// connection's event loop.
final class ServerCallRuntime {
    let id: UInt32
    let context: ServerContext
    /// The single request of a unary or server-streaming call.
    var request: EventLoopPromise<ByteBuffer>?
    /// The request stream of a client-streaming or bidirectional call.
    var source: MessageStream.Producer.Source?
    var task: Task<Void, Never>?

    init(id: UInt32, context: ServerContext) {
        self.id = id
        self.context = context
    }

    /// Stops the handler; what it waits on fails with `error`.
    func cancel(_ error: RPCError) {
        task?.cancel()
        request?.fail(error)
        request = nil
        source?.finish(error)
    }

    /// The task ended: nothing may wait on its inputs any more.
    func release() {
        request?.fail(RPCError(code: .cancelled, message: "the call has ended"))
        request = nil
        source?.finish()
    }
}

@available(*, unavailable)
extension ServerCallRuntime: Sendable {}

/// The body of a call's task.
enum ServerCallRunner {
    /// Authenticates, reports it, then runs the route's handler with its request.
    static func run(
        route: RPCRouter.Route, context: ServerContext, credentials: CallCredentials, authenticator: any Authenticator,
        metrics: ServerMetrics, tracer: (any Tracer)?, request: EventLoopFuture<ByteBuffer>?, stream: MessageStream?,
        writer: MessageWriter?, authenticated: @escaping @Sendable () -> Void
    ) async -> ServerCallOutcome {
        // The caller's trace, continued under a span id of this call's own: what logs and SQL
        // comments name. Without a traceparent (and without a tracer) a call pays nothing here.
        let trace = TraceContext(metadata: context.requestMetadata).map { $0.child(spanID: TraceContext.nextSpanID()) }
        var message: ByteBuffer?
        var failure: RPCError?
        if let tracer {
            var parent = InstrumentationContext.topLevel
            tracer.extract(context.requestMetadata, into: &parent, using: MetadataExtractor())
            let span = tracer.startSpan(route.descriptor.fullName, context: parent, ofKind: .server)
            span.attributes["rpc.system"] = "passion"
            span.attributes["rpc.service"] = route.descriptor.service
            span.attributes["rpc.method"] = route.descriptor.method
            (message, failure) = await InstrumentationContext.withValue(span.context) {
                await TraceContext.$current.withValue(trace) {
                    await perform(route, context, credentials, authenticator, metrics, request, stream, writer, authenticated)
                }
            }
            let code = failure?.code ?? .ok
            span.attributes["rpc.passion.status_code"] = code.name
            span.attributes["passion.principal"] = context.principal.kind.rawValue
            if let failure, code.isServerFault { span.setStatus(SpanStatus(code: .error, message: failure.message)) }
            span.end()
        } else if trace != nil {
            (message, failure) = await TraceContext.$current.withValue(trace) {
                await perform(route, context, credentials, authenticator, metrics, request, stream, writer, authenticated)
            }
        } else {
            (message, failure) = await perform(route, context, credentials, authenticator, metrics, request, stream, writer, authenticated)
        }
        if let trace, var error = failure {
            // The caller can quote it to an operator, who finds the call's logs and spans by it.
            var details = error.details ?? ErrorDetails(reason: "")
            details.fields["trace-id"] = trace.traceIDHex
            error.details = details
            failure = error
        }
        return ServerCallOutcome(
            message: message, error: failure, initialMetadata: context.initialMetadata, trailingMetadata: context.trailingMetadata,
            compress: context.compressResponses)
    }

    /// Authenticates, then runs the handler: its response, or why the call failed.
    private static func perform(
        _ route: RPCRouter.Route, _ context: ServerContext, _ credentials: CallCredentials, _ authenticator: any Authenticator,
        _ metrics: ServerMetrics, _ request: EventLoopFuture<ByteBuffer>?, _ stream: MessageStream?, _ writer: MessageWriter?,
        _ authenticated: @escaping @Sendable () -> Void
    ) async -> (ByteBuffer?, RPCError?) {
        do {
            context.principal = try await authenticator.principal(for: credentials, metrics: metrics)
            authenticated()
            return (try await handle(route.method, context: context, request: request, stream: stream, writer: writer), nil)
        } catch {
            return (nil, RPCError(converting: error))
        }
    }

    private static func handle(
        _ method: ServerMethod, context: ServerContext, request: EventLoopFuture<ByteBuffer>?, stream: MessageStream?,
        writer: MessageWriter?
    ) async throws -> ByteBuffer? {
        let missing = RPCError(code: .internal, message: "the call's request was not set up")
        switch method {
        case .unary(let handler):
            guard let request else { throw missing }
            return try await handler(try await request.get(), context)
        case .serverStreaming(let handler):
            guard let request, let writer else { throw missing }
            try await handler(try await request.get(), context, writer)
            return nil
        case .clientStreaming(let handler):
            guard let stream else { throw missing }
            return try await handler(stream, context)
        case .bidirectional(let handler):
            guard let stream, let writer else { throw missing }
            try await handler(stream, context, writer)
            return nil
        }
    }
}

/// The response side of a streaming call: messages go through the connection's machine.
struct ServerResponseSink: MessageSink {
    let handler: NIOLoopBound<ServerConnectionHandler>
    let callID: UInt32

    func write(_ message: ByteBuffer, compress: Bool) async throws {
        try await handler.eventLoop.runAndWait {
            try handler.value.writeResponse(callID, message, compress: compress)
        }
    }
}

/// Reads a call's metadata for a tracer's propagation (W3C `traceparent`, or whatever the
/// tracer's own keys are).
struct MetadataExtractor: Extractor {
    func extract(key: String, from metadata: Metadata) -> String? {
        metadata[key]
    }
}

extension StatusCode {
    /// Codes that mean the server failed, not the caller: what a span marks as an error.
    var isServerFault: Bool {
        self == .internal || self == .unknown || self == .dataLoss || self == .unavailable || self == .deadlineExceeded
    }
}
