import NIOCore
import PassionWire

/// One call as its connection's state machine sees it: where its request stands, whether its
/// handler still runs, what it holds in memory. A value; the machine owns every one of them.
struct ServerCallState {
    let id: UInt32
    let kind: CallKind
    var assembler = MessageAssembler()
    /// The client sent END_STREAM or HALF_CLOSE.
    var requestClosed = false
    /// Request messages received (single-request methods take exactly one).
    var requestMessages = 0
    /// The single request, kept until END_STREAM shows it was the only one.
    var singleRequest: ByteBuffer?
    /// The authenticator accepted the call. Until then its request bytes are not returned to the
    /// client's window, so a stranger cannot push more than one window per call.
    var authenticated = false
    /// Window bytes consumed before authentication, returned once it succeeds.
    var heldWindowBytes = 0
    /// Request bytes this call holds: fragments of an unfinished message and whole messages its
    /// handler has not taken yet.
    var bufferedBytes = 0
    /// The part of `bufferedBytes` that is fragments in the assembler.
    var assemblingBytes = 0
    /// The handler's task exists (from CALL until it returns): the call holds a concurrency slot.
    var handlerRunning = true
    /// TRAILERS were queued, or the client cancelled: nothing more is sent for this call.
    var responseClosed = false
    var headersSent = false
    /// When the server ends the call with DEADLINE_EXCEEDED.
    var deadline: MonotonicInstant?
    /// When its CALL arrived: what its duration (metric and log line) counts from.
    let startedAt: MonotonicInstant
    /// What the client was told (CANCELLED when the client cancelled); set once.
    var status: StatusCode?
    /// Nil once the call's end was recorded.
    var metrics: RouteMetrics?

    init(id: UInt32, kind: CallKind, deadline: MonotonicInstant?, startedAt: MonotonicInstant, metrics: RouteMetrics? = nil) {
        self.id = id
        self.kind = kind
        self.deadline = deadline
        self.startedAt = startedAt
        self.metrics = metrics
    }

    /// Nothing more will happen for the call once its handler returned and its response is
    /// closed; it is forgotten when its queued frames have gone out.
    var isFinished: Bool { !handlerRunning && responseClosed }
}

/// What the handler asks of the connection's task runner; see `ServerConnectionMachine`.
enum ServerConnectionAction {
    /// Start the call's task: it authenticates at once, then takes its request.
    case startCall(ServerCallStart)
    /// The single request message of a unary or server-streaming call.
    case deliverRequest(callID: UInt32, message: ByteBuffer)
    /// The next message of a client-streaming or bidirectional call's request stream.
    case yieldRequest(callID: UInt32, message: InboundMessage)
    /// The request stream ended: normally (nil) or with an error.
    case finishRequests(callID: UInt32, error: RPCError?)
    /// Cancel the call's handler task; what it waits on fails with `error`.
    case cancelCall(callID: UInt32, error: RPCError)
    /// Long-lived streams should end now: the server is shutting down.
    case shutdownCalls([UInt32])
    /// Stream writers of some calls may continue.
    case resumeWriters
    /// Stop (false) or resume (true) reading from the socket.
    case setReading(Bool)
    /// Close the connection (after writing the output).
    case close
}

/// A call to start: what its task needs to know.
struct ServerCallStart {
    let id: UInt32
    let route: RPCRouter.Route
    let head: CallHead
    let deadline: MonotonicInstant?
}

/// A handler's end, as its task reports it.
struct ServerCallOutcome {
    /// The response of a unary or client-streaming handler.
    var message: ByteBuffer?
    /// Nil for success.
    var error: RPCError?
    var initialMetadata: Metadata
    var trailingMetadata: Metadata
    var compress: Bool
}

/// What became of a stream writer's message.
enum ServerWriteResult {
    /// Queued; the writer may go on.
    case queued
    /// Queued, but the writer waits until the call's frames have left (socket or window).
    case wait
    /// The call has ended: the writer stops with this error.
    case ended(RPCError)
}
