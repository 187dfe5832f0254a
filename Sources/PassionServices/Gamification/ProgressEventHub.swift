import CoreMetrics
import Foundation
import Logging
import PassionMetrics
import PassionServerAPI
import PassionStore
import ServiceLifecycle
import Synchronization

/// Fans the progress events of every server instance (PostgreSQL NOTIFY on `passion_progress`)
/// out to the subscribers on this instance.
public final class ProgressEventHub: Service, Sendable {
    /// What a subscriber's stream carries.
    enum Signal: Sendable {
        case event(ProgressEvent)
        /// The listener reconnected: events may have been missed; read them from the table.
        case catchUp
        /// Time for a heartbeat; `newestDelivered` as it was when the beat was queued: every
        /// event up to it that this subscriber is owed was queued before the beat.
        case heartbeat(newestDelivered: Int64)
    }

    struct Subscriber {
        /// nil follows every user.
        var userID: String?
        var continuation: AsyncStream<Signal>.Continuation
    }

    public static let channel = "passion_progress"
    /// Signals buffered per subscriber before it is dropped as too slow.
    static let bufferLimit = 10_000

    private let listener: NotificationListener
    private let subscribers = Mutex([Int: Subscriber]())
    private let nextID = Atomic<Int>(0)
    /// The newest event id handed to the subscribers, set after it was queued to all of them.
    private let newest = Atomic<Int64>(0)

    /// The newest event id delivered on this instance: a resume point that moves even for a
    /// subscriber whose own user is quiet (events older than 24 hours cannot be resumed from).
    var newestDelivered: Int64 { newest.load(ordering: .acquiring) }
    private let logger: Logger

    private let metrics: EventHubMetrics

    public init(conninfo: String, metrics: any MetricsFactory = NOOPMetricsHandler.instance, logger: Logger) throws {
        self.listener = try NotificationListener(conninfo: conninfo, channels: [Self.channel], logger: logger)
        self.metrics = EventHubMetrics(factory: metrics)
        self.logger = logger
    }

    /// Sets the subscriber gauge; called when metrics are scraped.
    public func publishGauges() {
        metrics.subscribers.record(subscribers.withLock { $0.count })
    }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { try? await self.listener.run() }
            for await event in listener.events {
                switch event {
                case .notification(_, let payload):
                    metrics.notifications.increment()
                    // Nobody to tell: skip the parse (a batch notifies once per award). This
                    // event committed before the check, so a subscriber registering after it
                    // is not owed it (a resuming one reads it from the table).
                    guard subscribers.withLock({ !$0.isEmpty }) else { continue }
                    do {
                        let record = try EventRecord(notification: payload)
                        deliver(ProgressService.event(record))
                        metrics.deliveryLag.record(.seconds(max(0, Date().timeIntervalSince(record.createdAt))))
                    } catch {
                        logger.warning("unreadable progress event notification", metadata: ["error": "\(error)"])
                    }
                case .listening:
                    continue
                case .reconnected:
                    metrics.listenerReconnects.increment()
                    broadcast(.catchUp)
                }
            }
        }
        subscribers.withLock { subscribers in
            for subscriber in subscribers.values { subscriber.continuation.finish() }
            subscribers.removeAll()
        }
    }

    /// A stream of the events of `userID` (nil: every user) from now on; the caller must
    /// `unsubscribe` with the returned id.
    func subscribe(userID: String?) -> (id: Int, signals: AsyncStream<Signal>, continuation: AsyncStream<Signal>.Continuation) {
        let (stream, continuation) = AsyncStream.makeStream(of: Signal.self, bufferingPolicy: .bufferingOldest(Self.bufferLimit))
        let id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        subscribers.withLock { $0[id] = Subscriber(userID: userID, continuation: continuation) }
        return (id, stream, continuation)
    }

    func unsubscribe(_ id: Int) {
        let removed = subscribers.withLock { $0.removeValue(forKey: id) }
        removed?.continuation.finish()
    }

    private func deliver(_ event: ProgressEvent) {
        subscribers.withLock { subscribers in
            for (id, subscriber) in subscribers where subscriber.userID == nil || subscriber.userID == event.userID {
                if case .dropped = subscriber.continuation.yield(.event(event)) {
                    Self.dropSlow(id, subscriber, from: &subscribers)
                }
            }
            if event.id > newest.load(ordering: .relaxed) { newest.store(event.id, ordering: .releasing) }
        }
    }

    private func broadcast(_ signal: Signal) {
        subscribers.withLock { subscribers in
            for (id, subscriber) in subscribers {
                if case .dropped = subscriber.continuation.yield(signal) { Self.dropSlow(id, subscriber, from: &subscribers) }
            }
        }
    }

    /// A full buffer means the client reads slower than events come: its stream ends once it has
    /// read what is buffered (the oldest are kept), and it resumes from its last event id.
    private static func dropSlow(_ id: Int, _ subscriber: Subscriber, from subscribers: inout [Int: Subscriber]) {
        subscribers.removeValue(forKey: id)
        subscriber.continuation.finish()
    }
}

/// The event stream's metrics on this instance.
private struct EventHubMetrics: Sendable {
    let subscribers: Gauge
    let notifications: Counter
    let deliveryLag: CoreMetrics.Timer
    let listenerReconnects: Counter

    init(factory: any MetricsFactory) {
        subscribers = Gauge(label: "passion_events_subscribers", factory: factory)
        notifications = Counter(label: "passion_events_notifications_total", factory: factory)
        deliveryLag = Timer(label: "passion_events_delivery_lag_seconds", factory: factory)
        listenerReconnects = Counter(label: "passion_events_listener_reconnects_total", factory: factory)
    }
}
