import CoreMetrics
import Logging
import NIOCore
import NIOPosix
import PassionTLS
import ServiceLifecycle
import Tracing
import Synchronization

/// Configuration of `RPCServer`.
public struct RPCServerConfiguration: Sendable {
    /// Address to bind. Default `127.0.0.1`.
    public var host: String = "127.0.0.1"
    /// Port to bind; 0 picks a free one. Default 7443.
    public var port: Int = 7443
    /// TLS for every connection; nil serves plaintext (tests and loopback only).
    public var tls: TLSConfiguration?
    public var connection = ServerConnectionConfiguration()
    /// Connections open at once; more are closed as they arrive. Default 10,000.
    public var maxConnections = 10_000
    /// Bytes all connections together may hold for requests and queued responses; a call that
    /// would go beyond ends RESOURCE_EXHAUSTED. Default 512 MiB.
    public var memoryBudget = 512 * 1024 * 1024
    /// Where the server's metrics go (see docs/operations.md). Default: nowhere.
    public var metrics: any MetricsFactory = NOOPMetricsHandler.instance
    /// Spans per call (children of a caller's `traceparent`); nil, the default, traces nothing
    /// and costs nothing.
    public var tracer: (any Tracer)?

    public init(host: String = "127.0.0.1", port: Int = 7443, tls: TLSConfiguration?) {
        self.host = host
        self.port = port
        self.tls = tls
    }
}

/// The passion/1 server: accepts connections, serves calls from `router`, and drains
/// gracefully (GOAWAY, in-flight calls finish) on graceful shutdown.
public final class RPCServer: Service, Sendable {
    private let configuration: RPCServerConfiguration
    private let router: RPCRouter
    private let authenticator: any Authenticator
    private let group: any EventLoopGroup
    private let logger: Logger
    private let tlsContext: TLSContext?
    private let state = Mutex(State())
    private let boundAddress: EventLoopPromise<SocketAddress>
    /// Shared by every connection of this server.
    public let memory: ServerMemoryBudget
    private let metrics: ServerMetrics

    private struct State {
        var listener: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
        var drainWaiters: [CheckedContinuation<Void, Never>] = []
        var shuttingDown = false
    }

    public init(
        configuration: RPCServerConfiguration, router: RPCRouter,
        authenticator: any Authenticator = AnonymousAuthenticator(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger
    ) throws {
        self.configuration = configuration
        let metrics = ServerMetrics(factory: configuration.metrics)
        var router = router
        router.instrument(with: metrics)
        self.metrics = metrics
        self.router = router
        self.authenticator = authenticator
        self.group = group
        self.logger = logger
        self.tlsContext = try configuration.tls.map { try TLSContext($0) }
        self.memory = ServerMemoryBudget(limit: configuration.memoryBudget)
        self.boundAddress = group.next().makePromise(of: SocketAddress.self)
    }

    /// The address the server listens on, once it does.
    public var localAddress: SocketAddress {
        get async throws { try await boundAddress.futureResult.get() }
    }

    /// The port the server listens on, once it does (useful with port 0).
    public var port: Int {
        get async throws { try await localAddress.port ?? configuration.port }
    }

    public func run() async throws {
        let listener: any Channel
        do {
            listener = try await makeBootstrap().bind(host: configuration.host, port: configuration.port).get()
        } catch {
            boundAddress.fail(error)
            throw error
        }
        state.withLock { $0.listener = listener }
        guard let address = listener.localAddress else {
            throw RPCError(code: .internal, message: "listener has no address")
        }
        boundAddress.succeed(address)
        logger.info("listening on \(configuration.host):\(address.port ?? configuration.port)", metadata: [
            "tls": "\(configuration.tls == nil ? "off" : "on")"
        ])
        try await withGracefulShutdownHandler {
            try await listener.closeFuture.get()
        } onGracefulShutdown: {
            self.beginShutdown()
        }
        await waitForConnectionsToClose()
        logger.notice("server stopped")
    }

    /// Whether the server has begun draining: it accepts no new connections or calls.
    public var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }

    /// Stops accepting, asks every connection to drain, and lets `run()` return once they closed.
    public func beginShutdown() {
        let (listener, connections) = state.withLock { state -> ((any Channel)?, [any Channel]) in
            state.shuttingDown = true
            return (state.listener, Array(state.connections.values))
        }
        listener?.close(promise: nil)
        for connection in connections {
            connection.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }

    private func waitForConnectionsToClose() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if state.connections.isEmpty { return true }
                state.drainWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    private func makeBootstrap() -> ServerBootstrap {
        let tlsContext = self.tlsContext
        let configuration = self.configuration
        let router = self.router
        let authenticator = self.authenticator
        let logger = self.logger
        let metrics = self.metrics
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                guard self.track(channel) else {
                    metrics.connectionsRejected.increment()
                    logger.warning("connection refused: \(configuration.maxConnections) connections open")
                    return channel.close()
                }
                metrics.connectionsAccepted.increment()
                let memory = self.memory
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tlsContext { try sync.addHandler(TLSHandler(context: tlsContext)) }
                    try sync.addHandler(ServerConnectionHandler(
                        configuration: configuration.connection, router: router, authenticator: authenticator,
                        budget: memory, metrics: metrics, tracer: configuration.tracer, logger: logger))
                }
            }
    }

    /// Registers a new connection; false when the server already has its maximum.
    private func track(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        let admitted = state.withLock { state -> (Bool, Bool) in
            guard state.connections.count < configuration.maxConnections else { return (false, false) }
            state.connections[id] = channel
            return (true, state.shuttingDown)
        }
        guard admitted.0 else { return false }
        let shuttingDown = admitted.1
        if shuttingDown {
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        }
        channel.closeFuture.whenComplete { _ in
            let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
                state.connections[id] = nil
                guard state.connections.isEmpty else { return [] }
                defer { state.drainWaiters = [] }
                return state.drainWaiters
            }
            for waiter in waiters { waiter.resume() }
        }
        return true
    }
}
