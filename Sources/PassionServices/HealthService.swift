import PassionServerAPI
import PassionRPCServer
import SwiftProtobuf
import Synchronization

/// Serving status of the server and of each service, shared by everything that reports health
/// (the store reports NOT_SERVING while its database is unreachable).
public final class HealthStatus: Sendable {
    private struct State {
        var statuses: [String: HealthCheckResponse.ServingStatus] = [:]
        var watchers: [Int: (service: String, continuation: AsyncStream<HealthCheckResponse.ServingStatus>.Continuation)] = [:]
        var nextWatcher = 0
    }

    private let state = Mutex(State())

    /// Starts with the whole server ("") and every listed service SERVING.
    public init(services: [String]) {
        state.withLock { state in
            state.statuses[""] = .serving
            for service in services { state.statuses[service] = .serving }
        }
    }

    /// The status of `service` ("" for the server); nil when the service is unknown.
    public func status(of service: String) -> HealthCheckResponse.ServingStatus? {
        state.withLock { $0.statuses[service] }
    }

    /// Changes a status and tells every watcher of it.
    public func set(_ status: HealthCheckResponse.ServingStatus, for service: String = "") {
        state.withLock { state in
            guard state.statuses[service] != status else { return }
            state.statuses[service] = status
            for watcher in state.watchers.values where watcher.service == service {
                watcher.continuation.yield(status)
            }
        }
    }

    /// The current status and then every change of `service`.
    func watch(_ service: String) -> AsyncStream<HealthCheckResponse.ServingStatus> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: HealthCheckResponse.ServingStatus.self, bufferingPolicy: .bufferingNewest(1))
        let id = state.withLock { state -> Int in
            let id = state.nextWatcher
            state.nextWatcher += 1
            state.watchers[id] = (service, continuation)
            continuation.yield(state.statuses[service] ?? .serviceUnknown)
            return id
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.watchers.removeValue(forKey: id) }
        }
        return stream
    }
}

/// `passion.v1.Health`.
public struct HealthService: Health.ServiceProtocol {
    public let status: HealthStatus

    public init(status: HealthStatus) {
        self.status = status
    }

    public func check(request: HealthCheckRequest, context: ServerContext) async throws -> HealthCheckResponse {
        guard let current = status.status(of: request.service) else {
            throw RPCError(code: .notFound, message: "unknown service \(request.service)")
        }
        return HealthCheckResponse.with { $0.status = current }
    }

    public func watch(
        request: HealthCheckRequest, context: ServerContext, responses: RPCWriter<HealthCheckResponse>
    ) async throws {
        for await current in status.watch(request.service) {
            try await responses.write(HealthCheckResponse.with { $0.status = current })
        }
        throw CancellationError()
    }
}
