import CoreMetrics
import PassionMetrics
import PassionWire
import Synchronization

/// The server's metrics, made once per server from the factory it was given. Every handle a call
/// touches is created ahead (per route, when the server starts) or once per label value, so the
/// hot path increments atomics and never builds a label or looks up a name.
public final class ServerMetrics: Sendable {
    /// Metrics that record nothing: the default where no factory was given.
    public static let disabled = ServerMetrics(factory: NOOPMetricsHandler.instance)

    let factory: any MetricsFactory
    let connectionsOpen: Meter
    let connectionsAccepted: CoreMetrics.Counter
    let connectionsRejected: CoreMetrics.Counter
    let callsInFlight: Meter
    let wireBytesReceived: CoreMetrics.Counter
    let wireBytesSent: CoreMetrics.Counter
    private let refused: LabelledCounters
    private let goAways: LabelledCounters
    private let rateLimited: LabelledCounters
    private let authenticationFailures: LabelledCounters

    public init(factory: any MetricsFactory) {
        self.factory = factory
        connectionsOpen = Meter(label: "passion_connections_open", factory: factory)
        connectionsAccepted = Counter(label: "passion_connections_accepted_total", factory: factory)
        connectionsRejected = Counter(label: "passion_connections_rejected_total", factory: factory)
        callsInFlight = Meter(label: "passion_rpc_calls_in_flight", factory: factory)
        wireBytesReceived = Counter(label: "passion_wire_bytes_received_total", factory: factory)
        wireBytesSent = Counter(label: "passion_wire_bytes_sent_total", factory: factory)
        refused = LabelledCounters(label: "passion_rpc_calls_refused_total", key: "reason", factory: factory)
        goAways = LabelledCounters(label: "passion_goaways_sent_total", key: "reason", factory: factory)
        rateLimited = LabelledCounters(label: "passion_rate_limited_total", key: "principal", factory: factory)
        authenticationFailures = LabelledCounters(label: "passion_auth_failures_total", key: "reason", factory: factory)
    }

    /// The authenticator or the method's policy refused a call. `principal` is nil when the
    /// caller was not identified: a RATE_LIMITED answer then is the address's lockout after
    /// failed authentications, not a principal's rate limit.
    func refusedBeforeHandler(_ error: RPCError, principal: Principal?) {
        switch error.code {
        case .unauthenticated:
            authenticationFailures.increment(error.details?.reason ?? "OTHER")
        case .resourceExhausted where error.details?.reason == "RATE_LIMITED":
            if let principal {
                rateLimited.increment(principal.kind.rawValue)
            } else {
                authenticationFailures.increment("LOCKED_OUT")
            }
        default:
            break
        }
    }

    /// A call that never reached a handler.
    func refused(_ reason: CallRefusal) {
        refused.increment(reason.rawValue)
    }

    /// A GOAWAY went out: `reason` is `idle`, `shutdown` or the protocol error's kind.
    func goAway(_ reason: String) {
        goAways.increment(reason)
    }

    /// A GOAWAY for a protocol error, labelled by its kind (`frame_too_large`).
    func goAway(_ kind: WireError.Kind) {
        goAways.increment(kind.label)
    }

    func route(_ descriptor: MethodDescriptor) -> RouteMetrics {
        RouteMetrics(descriptor: descriptor, server: self)
    }
}

/// Why a call was refused before routing, as the `reason` label says it.
enum CallRefusal: String {
    case draining, concurrency, unimplemented, metadata
}

/// One method's handles: created when the server starts, so a call finds them on its route.
final class RouteMetrics: Sendable {
    let started: CoreMetrics.Counter
    let duration: CoreMetrics.Timer
    let messagesReceived: CoreMetrics.Counter
    let messagesSent: CoreMetrics.Counter
    let bytesReceived: CoreMetrics.Counter
    let bytesSent: CoreMetrics.Counter
    let server: ServerMetrics
    /// Made ahead: nearly every call ends OK, and it then takes no lock and hashes no label.
    private let finishedOK: CoreMetrics.Counter
    private let finished: LabelledCounters

    init(descriptor: MethodDescriptor, server: ServerMetrics) {
        let factory = server.factory
        let dimensions = [("service", descriptor.service), ("method", descriptor.method)]
        started = Counter(label: "passion_rpc_calls_started_total", dimensions: dimensions, factory: factory)
        duration = Timer(label: "passion_rpc_call_duration_seconds", dimensions: dimensions, factory: factory)
        messagesReceived = Counter(label: "passion_rpc_messages_received_total", dimensions: dimensions, factory: factory)
        messagesSent = Counter(label: "passion_rpc_messages_sent_total", dimensions: dimensions, factory: factory)
        bytesReceived = Counter(label: "passion_rpc_message_bytes_received_total", dimensions: dimensions, factory: factory)
        bytesSent = Counter(label: "passion_rpc_message_bytes_sent_total", dimensions: dimensions, factory: factory)
        finishedOK = Counter(
            label: "passion_rpc_calls_finished_total", dimensions: dimensions + [("code", StatusCode.ok.name)], factory: factory)
        finished = LabelledCounters(
            label: "passion_rpc_calls_finished_total", key: "code", dimensions: dimensions, factory: factory)
        self.server = server
    }

    func callStarted() {
        started.increment()
        server.callsInFlight.increment()
    }

    /// The call's last frame left (or the client cancelled it): `code` is what the client was told.
    func callFinished(_ code: StatusCode, after duration: Duration) {
        if code == .ok { finishedOK.increment() } else { finished.increment(code.name) }
        self.duration.record(duration)
        server.callsInFlight.decrement()
    }

    func received(_ bytes: Int) {
        messagesReceived.increment()
        bytesReceived.increment(by: bytes)
    }

    func sent(_ bytes: Int) {
        messagesSent.increment()
        bytesSent.increment(by: bytes)
    }
}
