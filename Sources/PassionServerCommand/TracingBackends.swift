import Logging
import ServiceLifecycle
import Synchronization
import Tracing

/// What `--otlp-endpoint` asks of a tracing backend.
public struct TracingBackendRequest: Sendable {
    /// The OTLP/HTTP URL spans go to.
    public let endpoint: String
    /// The fraction of calls traced when the caller did not decide (`--trace-sample`).
    public let sampleRatio: Double
    public let logger: Logger
}

/// A tracer and the service that exports its spans (run in the server's service group).
public struct TracingBackend: Sendable {
    public let tracer: any Tracer
    public let service: any Service

    public init(tracer: any Tracer, service: any Service) {
        self.tracer = tracer
        self.service = service
    }
}

/// Where a build that links an exporter plugs it in. The plain `passion-server` links none, so
/// the exporter's dependencies (swift-otel, AsyncHTTPClient, BoringSSL) cost its build nothing;
/// `Extras/otlp` registers swift-otel's before running `ServerCommand`.
public enum TracingBackends {
    public typealias Factory = @Sendable (TracingBackendRequest) throws -> TracingBackend

    private static let factory = Mutex<Factory?>(nil)

    /// Installs the backend `--otlp-endpoint` uses; call before `ServerCommand.main()`.
    public static func register(_ make: @escaping Factory) {
        factory.withLock { $0 = make }
    }

    static var registered: Factory? { factory.withLock { $0 } }
}
