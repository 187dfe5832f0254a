import NIOCore
import PassionTLS
import PassionWire
import Synchronization

/// What a handler knows about its call, and where it puts response metadata.
public final class ServerContext: Sendable {
    public let method: MethodDescriptor
    /// Metadata the client sent with the call.
    public let requestMetadata: Metadata
    /// When the call must end; nil when the client set no deadline.
    public let deadline: ContinuousClock.Instant?
    /// The client's address, for logs and audit.
    public let peer: String
    /// The names in the client's certificate when the client authenticated with mTLS.
    public let peerCertificate: PeerCertificateNames?

    private struct Mutable {
        var initial = Metadata()
        var trailing = Metadata()
        var principal = Principal.anonymous
        var compressResponses = true
    }

    private let mutable = Mutex(Mutable())

    init(
        method: MethodDescriptor, requestMetadata: Metadata, deadline: ContinuousClock.Instant?, peer: String,
        peerCertificate: PeerCertificateNames?
    ) {
        self.method = method
        self.requestMetadata = requestMetadata
        self.deadline = deadline
        self.peer = peer
        self.peerCertificate = peerCertificate
    }

    /// Metadata sent in a HEADERS frame before the first response message (or the status).
    /// Changes after the first message is written are not sent.
    public var initialMetadata: Metadata {
        get { mutable.withLock { $0.initial } }
        set { mutable.withLock { $0.initial = newValue } }
    }

    /// Metadata sent with the final status.
    public var trailingMetadata: Metadata {
        get { mutable.withLock { $0.trailing } }
        set { mutable.withLock { $0.trailing = newValue } }
    }

    /// Who is calling; set by the server before the handler runs.
    public internal(set) var principal: Principal {
        get { mutable.withLock { $0.principal } }
        set { mutable.withLock { $0.principal = newValue } }
    }

    /// Whether response messages above the negotiated threshold are compressed. Default true;
    /// a handler turns it off for responses that mix secrets with caller-chosen data.
    public var compressResponses: Bool {
        get { mutable.withLock { $0.compressResponses } }
        set { mutable.withLock { $0.compressResponses = newValue } }
    }

    /// Time left before the deadline; nil without one.
    public var remainingTime: Duration? {
        deadline.map { $0 - .now }
    }
}
