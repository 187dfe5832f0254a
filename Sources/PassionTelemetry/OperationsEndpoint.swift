import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// The operators' HTTP listener: `/metrics` (Prometheus text), `/live` and `/ready` for
/// orchestrators. Plain HTTP on its own address, apart from the RPC port, so a scraper needs
/// neither TLS nor a passion/1 client.
public final class OperationsEndpoint: Service, Sendable {
    /// Why the server should not get traffic now (`database unreachable`, `draining`), or nil
    /// when it is ready.
    public typealias ReadinessCheck = @Sendable () -> String?

    private let host: String
    private let requestedPort: Int
    private let registry: PrometheusCollectorRegistry
    private let readiness: ReadinessCheck
    private let beforeScrape: @Sendable () -> Void
    private let group: any EventLoopGroup
    private let logger: Logger
    private let bound: EventLoopPromise<Int>

    public init(
        host: String, port: Int, registry: PrometheusCollectorRegistry, readiness: @escaping ReadinessCheck,
        beforeScrape: @escaping @Sendable () -> Void = {},
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger
    ) {
        self.beforeScrape = beforeScrape
        self.host = host
        self.requestedPort = port
        self.registry = registry
        self.readiness = readiness
        self.group = group
        self.logger = logger
        self.bound = group.next().makePromise(of: Int.self)
    }

    /// The port it listens on, once it does (port 0 picks one).
    public var port: Int {
        get async throws { try await bound.futureResult.get() }
    }

    /// `http://HOST:PORT`, once it listens.
    public var url: String {
        get async throws { "http://\(host.contains(":") ? "[\(host)]" : host):\(try await port)" }
    }

    public func run() async throws {
        let registry = self.registry
        let readiness = self.readiness
        let beforeScrape = self.beforeScrape
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMapThrowing {
                        try channel.pipeline.syncOperations.addHandler(
                            OperationsHTTPHandler(registry: registry, readiness: readiness, beforeScrape: beforeScrape))
                    }
                }
                .bind(host: host, port: requestedPort).get()
        } catch {
            bound.fail(error)
            logger.critical("cannot listen for metrics on \(host):\(requestedPort) (--metrics-address): \(error)")
            throw error
        }
        let port = channel.localAddress?.port ?? requestedPort
        bound.succeed(port)
        logger.info("operations endpoint on http://\(host):\(port) (/metrics, /ready, /live)")
        // Stops on a graceful shutdown and on cancellation alike: a cancelled service group
        // must not wait on a listener nobody closes.
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await channel.closeFuture.get()
            } onGracefulShutdown: {
                channel.close(promise: nil)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    /// `HOST:PORT` or `[IPv6]:PORT`; nil when the text is neither.
    public static func parseAddress(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = text[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty, !host.contains("["), !host.contains("]") else { return nil }
        return (String(host), port)
    }
}

/// Answers one request per connection and closes it: a scrape every few seconds gains nothing
/// from keep-alive, and no idle connection outlives the listener.
private final class OperationsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private let readiness: OperationsEndpoint.ReadinessCheck
    private let beforeScrape: @Sendable () -> Void
    private var request: HTTPRequestHead?

    init(
        registry: PrometheusCollectorRegistry, readiness: @escaping OperationsEndpoint.ReadinessCheck,
        beforeScrape: @escaping @Sendable () -> Void
    ) {
        self.registry = registry
        self.readiness = readiness
        self.beforeScrape = beforeScrape
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break  // no path takes a body; it is read and dropped
        case .end:
            guard let head = request.take() else { return }
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let (status, contentType, body): (HTTPResponseStatus, String, [UInt8])
        switch (head.method, path) {
        case (.GET, "/metrics"), (.HEAD, "/metrics"):
            beforeScrape()
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            (status, contentType, body) = (.ok, "text/plain; version=0.0.4; charset=utf-8", buffer)
        case (.GET, "/live"), (.HEAD, "/live"):
            (status, contentType, body) = (.ok, "text/plain; charset=utf-8", Array("live\n".utf8))
        case (.GET, "/ready"), (.HEAD, "/ready"):
            if let reason = readiness() {
                (status, contentType, body) = (.serviceUnavailable, "text/plain; charset=utf-8", Array("\(reason)\n".utf8))
            } else {
                (status, contentType, body) = (.ok, "text/plain; charset=utf-8", Array("ready\n".utf8))
            }
        case (_, "/metrics"), (_, "/live"), (_, "/ready"):
            (status, contentType, body) = (.methodNotAllowed, "text/plain; charset=utf-8", Array("GET only\n".utf8))
        default:
            (status, contentType, body) = (.notFound, "text/plain; charset=utf-8", Array("not found: /metrics, /ready, /live\n".utf8))
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.count)")
        if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET, HEAD") }
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

@available(*, unavailable)
extension OperationsHTTPHandler: Sendable {}
