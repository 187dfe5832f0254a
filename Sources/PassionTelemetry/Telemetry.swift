import CoreMetrics
import Prometheus

/// The process's metric registry and the factory every component records through. One per
/// server process; tests make their own, so parallel servers never share counters.
public struct Telemetry: Sendable {
    /// The release this build calls itself; the commit comes from the environment of the build.
    public static let version = "1.0.0-dev"

    public let registry: PrometheusCollectorRegistry
    public let factory: any MetricsFactory

    /// `commit` labels `passion_build_info` (`unknown` when the build did not say).
    public init(commit: String? = nil) {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Calls take from a fraction of a millisecond to seconds; database waits and event lag
        // are alarming from a millisecond on.
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .microseconds(2_500_000), .seconds(5), .seconds(10),
        ]
        self.registry = registry
        self.factory = factory
        let commit = commit.map { $0.filter { $0.isHexDigit }.prefix(40) }.map(String.init) ?? ""
        Gauge(
            label: "passion_build_info", dimensions: [("version", Self.version), ("commit", commit.isEmpty ? "unknown" : commit)],
            factory: factory
        ).record(1)
    }
}
