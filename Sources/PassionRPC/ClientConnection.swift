import NIOCore
import NIOPosix
import PassionTLS
import PassionWire

/// Where a client connects and how.
public struct ClientConnectionConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// TLS settings; nil speaks plaintext (only servers started with `--plaintext` accept it).
    public var tls: TLSConfiguration?
    /// Limits this client announces. Defaults to the protocol defaults.
    public var settings = ConnectionSettings()
    /// Time allowed for TCP, TLS and the HELLO exchange. Default 10 s.
    public var connectTimeout: Duration = .seconds(10)

    /// A TLS connection verifying the server's certificate for `host` against `trustRootsPath`
    /// (system roots when nil).
    public init(host: String, port: Int, tls: TLSConfiguration?) {
        self.host = host
        self.port = port
        self.tls = tls
    }
}

/// One connection to a passion/1 server, carrying many concurrent calls.
public final class ClientConnection: RPCClientTransport {
    let channel: any Channel
    private let handler: NIOLoopBound<ClientConnectionHandler>
    /// The limits both sides agreed on.
    public let settings: NegotiatedSettings
    /// What TLS negotiated, when TLS is on.
    public let tls: TLSHandshakeCompleted?

    private init(
        channel: any Channel, handler: NIOLoopBound<ClientConnectionHandler>, settings: NegotiatedSettings,
        tls: TLSHandshakeCompleted?, flags: ConnectionFlags
    ) {
        self.flags = flags
        self.channel = channel
        self.handler = handler
        self.settings = settings
        self.tls = tls
    }

    /// Connects, completes TLS and the HELLO exchange; throws UNAVAILABLE with the reason
    /// (refused, TLS verification failure, timeout) when that fails.
    public static func connect(
        _ configuration: ClientConnectionConfiguration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> ClientConnection {
        let tlsContext: TLSContext?
        do {
            tlsContext = try configuration.tls.map { try TLSContext($0) }
        } catch let error as TLSError {
            throw RPCError(code: .invalidArgument, message: "TLS configuration: \(error.message)")
        }
        let eventLoop = group.next()
        let ready = eventLoop.makePromise(of: NegotiatedSettings.self)
        let settings = configuration.settings
        let bootstrap = ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tlsContext { try sync.addHandler(TLSHandler(context: tlsContext)) }
                    try sync.addHandler(ClientConnectionHandler(settings: settings, ready: ready))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: configuration.host, port: configuration.port).get()
        } catch {
            ready.fail(RPCError(code: .unavailable, message: "connect failed"))
            throw RPCError(
                code: .unavailable, message: "cannot connect to \(configuration.host):\(configuration.port): \(error)")
        }
        let timeout = eventLoop.scheduleTask(in: TimeAmount(configuration.connectTimeout)) {
            ready.fail(RPCError(code: .unavailable, message: "connection handshake timed out"))
            channel.close(promise: nil)
        }
        do {
            let negotiated = try await ready.futureResult.get()
            timeout.cancel()
            let (boundHandler, tls, flags) = try await eventLoop.submit {
                let handler = try channel.pipeline.syncOperations.handler(type: ClientConnectionHandler.self)
                return (NIOLoopBound(handler, eventLoop: eventLoop), handler.tlsInfo, handler.flags)
            }.get()
            if configuration.tls != nil, let alpn = tls?.applicationProtocol, alpn != "passion/1" {
                throw RPCError(code: .unavailable, message: "server chose application protocol \(alpn), not passion/1")
            }
            return ClientConnection(
                channel: channel, handler: boundHandler, settings: negotiated, tls: tls, flags: flags)
        } catch {
            timeout.cancel()
            channel.close(promise: nil)
            throw error as? RPCError ?? RPCError(code: .unavailable, message: "\(error)")
        }
    }

    private let flags: ConnectionFlags

    /// Whether new calls can start here (false after GOAWAY or close).
    public var isUsable: Bool {
        channel.isActive && !flags.isDraining
    }

    /// Runs tasks on this connection's event loop: a load generator that prefers it calls
    /// without a thread hop between the caller and the connection.
    public var taskExecutor: any TaskExecutor { EventLoopTaskExecutor(eventLoop: channel.eventLoop) }

    /// The event loop this connection's I/O runs on: a timer scheduled there wakes a task that
    /// prefers `taskExecutor` without a detour through the global executor's timers.
    public var eventLoop: any EventLoop { channel.eventLoop }

    /// Returns once the connection has closed (the server closed it, or `close()`).
    public func closed() async {
        try? await channel.closeFuture.get()
    }

    /// Sends GOAWAY and closes.
    public func close() async {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.close() }
        try? await channel.closeFuture.get()
    }

    /// Measures one PING/PONG round trip.
    public func ping() async throws -> Duration {
        let start = ContinuousClock.now
        let handler = self.handler
        let eventLoop = channel.eventLoop
        _ = try await eventLoop.flatSubmit { handler.value.ping(on: eventLoop) }.get()
        return ContinuousClock.now - start
    }

    // MARK: Calls

    /// A call as seen from outside the event loop.
    private struct StartedCall: Sendable {
        let call: NIOLoopBound<ClientCall>
        let completion: EventLoopFuture<UnaryResponse>
        let started: EventLoopFuture<Void>
        let stream: MessageStream?

        var response: StreamingResponse {
            // Streaming kinds always have a stream; the empty one is unreachable.
            StreamingResponse(messages: stream ?? MessageStream.make(onConsumed: { _, _ in }).0, completion: completion)
        }
    }

    private func begin(
        _ method: MethodDescriptor, options: CallOptions, message: ByteBuffer?, endStream: Bool
    ) async throws -> StartedCall {
        let eventLoop = channel.eventLoop
        if eventLoop.inEventLoop { return startOnLoop(method, options: options, message: message, endStream: endStream) }
        return try await eventLoop.submit {
            self.startOnLoop(method, options: options, message: message, endStream: endStream)
        }.get()
    }

    /// Starts a unary call from this connection's event loop and returns its answer as a future,
    /// with no task per call: an open-loop load generator starts each tick's calls in one loop turn
    /// and records each answer in a callback. Off the loop, the start hops onto it first.
    package func startUnary(
        _ method: MethodDescriptor, request: ByteBuffer, options: CallOptions
    ) -> EventLoopFuture<UnaryResponse> {
        let eventLoop = channel.eventLoop
        if eventLoop.inEventLoop { return startOnLoop(method, options: options, message: request, endStream: true).completion }
        return eventLoop.flatSubmit {
            self.startOnLoop(method, options: options, message: request, endStream: true).completion
        }
    }

    private func startOnLoop(
        _ method: MethodDescriptor, options: CallOptions, message: ByteBuffer?, endStream: Bool
    ) -> StartedCall {
        let eventLoop = channel.eventLoop
        let handler = self.handler
        let call = ClientCall(kind: method.kind, eventLoop: eventLoop)
        let boundCall = NIOLoopBound(call, eventLoop: eventLoop)
        var stream: MessageStream?
        if !method.kind.isSingleResponse {
            let (messages, source) = MessageStream.make(
                onConsumed: { bytes, _ in
                    guard bytes > 0 else { return }
                    eventLoop.execute { handler.value.acknowledge(boundCall.value, bytes: bytes) }
                },
                onTerminate: {
                    // The consumer stopped listening before the end: tell the server.
                    eventLoop.execute {
                        handler.value.cancel(
                            boundCall.value, reason: .cancelled,
                            error: RPCError(code: .cancelled, message: "response stream dropped"))
                    }
                })
            call.responseSource = source
            stream = messages
        }
        let head = CallHead(
            method: method.fullName, timeoutMicroseconds: options.timeout.map { max($0.microseconds, 1) } ?? 0,
            metadata: options.metadata)
        handler.value.start(call, head: head, message: message, endStream: endStream, compress: options.compression)
        if let timeout = options.timeout {
            let timer = eventLoop.scheduleTask(in: TimeAmount(timeout)) {
                handler.value.cancel(
                    boundCall.value, reason: .deadlineExceeded,
                    error: RPCError(code: .deadlineExceeded, message: "deadline exceeded after \(timeout)"))
            }
            call.completion.futureResult.whenComplete { _ in timer.cancel() }
        }
        return StartedCall(
            call: boundCall, completion: call.completion.futureResult, started: call.started.futureResult,
            stream: stream)
    }

    private func cancelOnTaskCancel(_ call: NIOLoopBound<ClientCall>) {
        let handler = self.handler
        call.eventLoop.execute {
            handler.value.cancel(call.value, reason: .cancelled, error: RPCError(code: .cancelled, message: "call cancelled"))
        }
    }

    public func unary(_ method: MethodDescriptor, request: ByteBuffer, options: CallOptions) async throws -> UnaryResponse {
        let started = try await begin(method, options: options, message: request, endStream: true)
        return try await withTaskCancellationHandler {
            try await started.completion.get()
        } onCancel: {
            cancelOnTaskCancel(started.call)
        }
    }

    public func serverStreaming(
        _ method: MethodDescriptor, request: ByteBuffer, options: CallOptions
    ) async throws -> StreamingResponse {
        try await begin(method, options: options, message: request, endStream: true).response
    }

    public func clientStreaming(
        _ method: MethodDescriptor, options: CallOptions, requests: @Sendable (MessageWriter) async throws -> Void
    ) async throws -> UnaryResponse {
        let started = try await begin(method, options: options, message: nil, endStream: false)
        return try await withTaskCancellationHandler {
            try await started.started.get()
            try await sendRequests(started.call, requests: requests)
            return try await started.completion.get()
        } onCancel: {
            cancelOnTaskCancel(started.call)
        }
    }

    public func bidirectional<Result: Sendable>(
        _ method: MethodDescriptor, options: CallOptions,
        body: @Sendable (MessageWriter, StreamingResponse) async throws -> Result
    ) async throws -> Result {
        let started = try await begin(method, options: options, message: nil, endStream: false)
        let writer = MessageWriter(sink: ClientRequestSink(handler: handler, call: started.call))
        let handler = self.handler
        return try await withTaskCancellationHandler {
            try await started.started.get()
            let result = try await body(writer, started.response)
            try await handler.eventLoop.runAndWait {
                handler.value.halfClose(started.call.value)
                return nil
            }
            return result
        } onCancel: {
            cancelOnTaskCancel(started.call)
        }
    }

    private func sendRequests(
        _ call: NIOLoopBound<ClientCall>, requests: @Sendable (MessageWriter) async throws -> Void
    ) async throws {
        let writer = MessageWriter(sink: ClientRequestSink(handler: handler, call: call))
        do {
            try await requests(writer)
        } catch {
            let handler = self.handler
            let rpcError =
                error as? RPCError
                ?? RPCError(
                    code: .cancelled,
                    message: error is CancellationError ? "call cancelled" : "request stream failed: \(error)")
            try await handler.eventLoop.runAndWait {
                handler.value.cancel(call.value, reason: .cancelled, error: rpcError)
                return nil
            }
            throw rpcError
        }
        let handler = self.handler
        try await handler.eventLoop.runAndWait {
            handler.value.halfClose(call.value)
            return nil
        }
    }
}

/// A response stream: the messages as they arrive, then the trailers.
public struct StreamingResponse: Sendable {
    /// The messages; iteration throws the call's error if it fails.
    public let messages: MessageStream
    let completion: EventLoopFuture<UnaryResponse>

    /// Metadata of the response, once the call finished successfully.
    public var trailers: ResponseTrailers {
        get async throws {
            let response = try await completion.get()
            return ResponseTrailers(initialMetadata: response.initialMetadata, trailingMetadata: response.trailingMetadata)
        }
    }
}

/// The request side of a client-streaming or bidirectional call.
private struct ClientRequestSink: MessageSink {
    let handler: NIOLoopBound<ClientConnectionHandler>
    let call: NIOLoopBound<ClientCall>

    func write(_ message: ByteBuffer, compress: Bool) async throws {
        try await handler.eventLoop.runAndWait {
            try handler.value.writeMessage(call.value, message, compress: compress)
        }
    }
}
