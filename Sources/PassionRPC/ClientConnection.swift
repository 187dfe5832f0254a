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
        let handler = ClientConnectionHandler(settings: configuration.settings, eventLoop: eventLoop)
        let boundHandler = NIOLoopBound(handler, eventLoop: eventLoop)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tlsContext { try sync.addHandler(TLSHandler(context: tlsContext)) }
                    try sync.addHandler(boundHandler.value)
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: configuration.host, port: configuration.port).get()
        } catch {
            throw RPCError(
                code: .unavailable, message: "cannot connect to \(configuration.host):\(configuration.port): \(error)")
        }
        let timeout = eventLoop.scheduleTask(in: TimeAmount(configuration.connectTimeout)) {
            boundHandler.value.ready.fail(RPCError(code: .unavailable, message: "connection handshake timed out"))
            channel.close(promise: nil)
        }
        do {
            let settings = try await boundHandler.eventLoop.flatSubmit { boundHandler.value.ready.futureResult }.get()
            timeout.cancel()
            let tls = try await eventLoop.submit { boundHandler.value.tlsInfo }.get()
            return ClientConnection(
                channel: channel, handler: boundHandler, settings: settings, tls: tls, flags: handler.flags)
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
        _ = try await channel.eventLoop.flatSubmit { handler.value.ping() }.get()
        return ContinuousClock.now - start
    }

    // MARK: Calls

    private func begin(
        _ method: MethodDescriptor, options: CallOptions, message: ByteBuffer?, endStream: Bool
    ) -> (NIOLoopBound<ClientCall>, MessageStream?) {
        let eventLoop = channel.eventLoop
        let call = ClientCall(kind: method.kind, eventLoop: eventLoop)
        let boundCall = NIOLoopBound(call, eventLoop: eventLoop)
        let handler = self.handler
        var stream: MessageStream?
        if !method.kind.isSingleResponse {
            let (messages, source) = MessageStream.make(
                onDemand: { wantsMore in
                    eventLoop.execute { handler.value.setDemand(callID: boundCall.value.id, wantsMore: wantsMore) }
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
        return (boundCall, stream)
    }

    private func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) async throws -> T {
        if channel.eventLoop.inEventLoop { return body() }
        return try await channel.eventLoop.submit(body).get()
    }

    private func cancelOnTaskCancel(_ call: NIOLoopBound<ClientCall>) -> @Sendable () -> Void {
        let handler = self.handler
        return {
            call.eventLoop.execute {
                handler.value.cancel(call.value, reason: .cancelled, error: RPCError(code: .cancelled, message: "call cancelled"))
            }
        }
    }

    public func unary(_ method: MethodDescriptor, request: ByteBuffer, options: CallOptions) async throws -> UnaryResponse {
        let call = try await onLoop { self.begin(method, options: options, message: request, endStream: true).0 }
        return try await withTaskCancellationHandler {
            try await call.value.completion.futureResult.get()
        } onCancel: {
            cancelOnTaskCancel(call)()
        }
    }

    public func serverStreaming(
        _ method: MethodDescriptor, request: ByteBuffer, options: CallOptions
    ) async throws -> StreamingResponse {
        let (call, stream) = try await onLoop { () -> (NIOLoopBound<ClientCall>, MessageStream?) in
            self.begin(method, options: options, message: request, endStream: true)
        }
        let completion = try await onLoop { call.value.completion.futureResult }
        // A stream always exists for streaming kinds.
        return StreamingResponse(messages: stream ?? MessageStream.make(onDemand: { _ in }).0, completion: completion)
    }

    public func clientStreaming(
        _ method: MethodDescriptor, options: CallOptions, requests: @Sendable (MessageWriter) async throws -> Void
    ) async throws -> UnaryResponse {
        let call = try await onLoop { self.begin(method, options: options, message: nil, endStream: false).0 }
        let (completion, started) = try await onLoop { (call.value.completion.futureResult, call.value.started.futureResult) }
        return try await withTaskCancellationHandler {
            try await started.get()
            try await sendRequests(call, requests: requests)
            return try await completion.get()
        } onCancel: {
            cancelOnTaskCancel(call)()
        }
    }

    public func bidirectional<Result: Sendable>(
        _ method: MethodDescriptor, options: CallOptions,
        body: @Sendable (MessageWriter, StreamingResponse) async throws -> Result
    ) async throws -> Result {
        let (call, stream) = try await onLoop { () -> (NIOLoopBound<ClientCall>, MessageStream?) in
            self.begin(method, options: options, message: nil, endStream: false)
        }
        let (completion, started) = try await onLoop { (call.value.completion.futureResult, call.value.started.futureResult) }
        let response = StreamingResponse(messages: stream ?? MessageStream.make(onDemand: { _ in }).0, completion: completion)
        let writer = MessageWriter(sink: ClientRequestSink(handler: handler, call: call))
        return try await withTaskCancellationHandler {
            try await started.get()
            let result = try await body(writer, response)
            try await onLoop { self.handler.value.halfClose(call.value) }
            return result
        } onCancel: {
            cancelOnTaskCancel(call)()
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
            let rpcError = error as? RPCError ?? RPCError(code: .cancelled, message: "request stream failed: \(error)")
            try await onLoop { handler.value.cancel(call.value, reason: .cancelled, error: rpcError) }
            throw error
        }
        try await onLoop { self.handler.value.halfClose(call.value) }
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
