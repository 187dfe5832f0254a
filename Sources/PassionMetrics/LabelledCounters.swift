import CoreMetrics
import Synchronization

/// Counters of one name told apart by one label whose values are few but not known ahead
/// (status codes seen, GOAWAY reasons, SQLSTATE classes): each is made the first time its value
/// occurs, so the exposition lists only what happened. Callers pass only bounded values.
public final class LabelledCounters: Sendable {
    private let label: String
    private let key: String
    private let dimensions: [(String, String)]
    private let factory: any MetricsFactory
    private let counters = Mutex([String: Counter]())

    public init(label: String, key: String, dimensions: [(String, String)] = [], factory: any MetricsFactory) {
        self.label = label
        self.key = key
        self.dimensions = dimensions
        self.factory = factory
    }

    public func increment(_ value: String, by amount: Int = 1) {
        let counter = counters.withLock { counters in
            if let counter = counters[value] { return counter }
            let counter = Counter(label: label, dimensions: dimensions + [(key, value)], factory: factory)
            counters[value] = counter
            return counter
        }
        counter.increment(by: amount)
    }
}

extension CoreMetrics.Timer {
    /// Records a `Duration` (swift-metrics takes nanoseconds).
    public func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        recordNanoseconds(seconds &* 1_000_000_000 &+ attoseconds / 1_000_000_000)
    }
}
