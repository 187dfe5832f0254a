import NIOCore
import NIOPosix
import Synchronization

/// Configuration of an `RPCClient` pool.
public struct RPCClientConfiguration: Sendable {
    public var connection: ClientConnectionConfiguration
    /// Connections opened to the server; calls are spread over them. Default 1.
    public var connections: Int = 1
    public var retry = RetryPolicy()
    /// Delay before reconnecting after a failed attempt: doubles from `initial` up to `maximum`,
    /// with full jitter. Defaults 100 ms and 10 s.
    public var reconnectBackoff = Backoff(initial: .milliseconds(100), maximum: .seconds(10))

    public init(connection: ClientConnectionConfiguration) {
        self.connection = connection
    }
}

/// Exponential backoff with full jitter.
public struct Backoff: Sendable {
    public var initial: Duration
    public var maximum: Duration

    public init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The delay before attempt `attempt` (0-based): random in [0, min(initial·2^attempt, maximum)].
    public func delay(attempt: Int) -> Duration {
        let ceiling = min(initial * (1 << min(attempt, 20)), maximum)
        let nanoseconds = ceiling.components.seconds * 1_000_000_000 + ceiling.components.attoseconds / 1_000_000_000
        return .nanoseconds(Int64.random(in: 0...max(nanoseconds, 0)))
    }
}

/// When the client repeats a failed unary call by itself.
///
/// Calls the server refused unprocessed are always retried (they did nothing). Calls that
/// failed with UNAVAILABLE after they may have reached the server are retried only for methods
/// declared idempotent in `Protocol/`.
public struct RetryPolicy: Sendable {
    /// Attempts in total, including the first. Default 3.
    public var maxAttempts: Int = 3
    public var backoff = Backoff(initial: .milliseconds(50), maximum: .seconds(2))

    public init() {}
}

/// A pool of connections to one server: reconnects with backoff, spreads calls, retries what is
/// safe to retry. Generated clients take it as their transport.
public final class RPCClient: RPCClientTransport {
    public let configuration: RPCClientConfiguration
    private let group: any EventLoopGroup
    private let slots: [Slot]
    private let next = Atomic<Int>(0)

    public init(
        configuration: RPCClientConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.configuration = configuration
        self.group = group
        self.slots = (0..<max(1, configuration.connections)).map { _ in Slot() }
    }

    /// Closes every connection.
    public func close() async {
        for slot in slots {
            if let connection = slot.takeConnection() { await connection.close() }
        }
    }

    /// A ready connection, connecting or reconnecting as needed.
    public func connection(waitForReady: Bool = false) async throws -> ClientConnection {
        let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
        let slot = slots[index % slots.count]
        while true {
            let decision = slot.decide { [configuration, group] in
                Task { try await ClientConnection.connect(configuration.connection, group: group) }
            }
            switch decision {
            case .use(let connection):
                return connection
            case .await(let task):
                do {
                    return try await task.value
                } catch {
                    if !waitForReady { throw error }
                }
            case .wait(let until, let error):
                guard waitForReady else { throw error }
                try await Task.sleep(until: until)
            case .connect(let task):
                do {
                    let connection = try await task.value
                    slot.connected(connection)
                    return connection
                } catch {
                    let rpcError = error as? RPCError ?? RPCError(code: .unavailable, message: "\(error)")
                    slot.failed(rpcError, backoff: configuration.reconnectBackoff)
                    if !waitForReady { throw rpcError }
                }
            }
        }
    }

    // MARK: RPCClientTransport

    public func unary(_ method: MethodDescriptor, request: ByteBuffer, options: CallOptions) async throws -> UnaryResponse {
        let deadline = options.timeout.map { ContinuousClock.now + $0 }
        var attempt = 0
        var refusals = 0
        while true {
            var attemptOptions = options
            if let deadline {
                let remaining = deadline - .now
                guard remaining > .zero else {
                    throw RPCError(code: .deadlineExceeded, message: "deadline exceeded before the call could start")
                }
                attemptOptions.timeout = remaining
            }
            do {
                let connection = try await connection(waitForReady: options.waitForReady)
                return try await connection.unary(method, request: request, options: attemptOptions)
            } catch let error as RPCError {
                if error.wasRefused, refusals < 5 {
                    // Not processed, so safe for any method; a short jittered pause lets the
                    // server free slots instead of refusing the same burst again.
                    try await Task.sleep(for: configuration.retry.backoff.delay(attempt: refusals))
                    refusals += 1
                    continue
                }
                guard error.code == .unavailable, method.idempotency.allowsRetry,
                    attempt + 1 < configuration.retry.maxAttempts
                else { throw error }
                try await Task.sleep(for: configuration.retry.backoff.delay(attempt: attempt))
                attempt += 1
            }
        }
    }

    public func serverStreaming(
        _ method: MethodDescriptor, request: ByteBuffer, options: CallOptions
    ) async throws -> StreamingResponse {
        try await connection(waitForReady: options.waitForReady).serverStreaming(method, request: request, options: options)
    }

    public func clientStreaming(
        _ method: MethodDescriptor, options: CallOptions, requests: @Sendable (MessageWriter) async throws -> Void
    ) async throws -> UnaryResponse {
        try await connection(waitForReady: options.waitForReady).clientStreaming(method, options: options, requests: requests)
    }

    public func bidirectional<Result: Sendable>(
        _ method: MethodDescriptor, options: CallOptions,
        body: @Sendable (MessageWriter, StreamingResponse) async throws -> Result
    ) async throws -> Result {
        try await connection(waitForReady: options.waitForReady).bidirectional(method, options: options, body: body)
    }
}

/// One pooled connection's lifecycle.
private final class Slot: Sendable {
    enum Decision {
        case use(ClientConnection)
        case await(Task<ClientConnection, any Error>)
        case wait(until: ContinuousClock.Instant, error: RPCError)
        /// The caller started this attempt and reports its outcome.
        case connect(Task<ClientConnection, any Error>)
    }

    private enum State {
        case idle
        case connecting(Task<ClientConnection, any Error>)
        case ready(ClientConnection)
        case backingOff(until: ContinuousClock.Instant, error: RPCError)
    }

    private struct Guarded {
        var state: State = .idle
        var failures = 0
    }

    private let guarded = Mutex(Guarded())

    func decide(startConnecting: () -> Task<ClientConnection, any Error>) -> Decision {
        guarded.withLock { guarded in
            switch guarded.state {
            case .ready(let connection) where connection.isUsable:
                return .use(connection)
            case .connecting(let task):
                return .await(task)
            case .backingOff(let until, let error) where ContinuousClock.now < until:
                return .wait(until: until, error: error)
            default:
                // Started under the lock so that concurrent callers await one attempt.
                let task = startConnecting()
                guarded.state = .connecting(task)
                return .connect(task)
            }
        }
    }

    func connected(_ connection: ClientConnection) {
        guarded.withLock {
            $0.state = .ready(connection)
            $0.failures = 0
        }
    }

    func failed(_ error: RPCError, backoff: Backoff) {
        guarded.withLock {
            let delay = backoff.delay(attempt: $0.failures)
            $0.failures += 1
            $0.state = .backingOff(until: .now + delay, error: error)
        }
    }

    func takeConnection() -> ClientConnection? {
        guarded.withLock { guarded in
            defer { guarded.state = .idle }
            if case .ready(let connection) = guarded.state { return connection }
            return nil
        }
    }
}
