import NIOCore
import PassionWire

/// The outcome of a call whose response is one message.
public struct UnaryResponse: Sendable {
    public var message: ByteBuffer
    public var initialMetadata: Metadata
    public var trailingMetadata: Metadata
}

/// Metadata of a finished streaming response.
public struct ResponseTrailers: Sendable {
    public var initialMetadata: Metadata
    public var trailingMetadata: Metadata
}

/// One call as its caller sees it: the promises and the response stream the connection's
/// actions resolve. Its wire state lives in `ClientConnectionMachine`. Confined to its
/// connection's event loop.
final class ClientCall {
    let kind: CallKind
    /// Set when the connection's machine takes the call.
    var handle = ClientCallHandle(rawValue: 0)
    var responseSource: MessageStream.Producer.Source?
    let completion: EventLoopPromise<UnaryResponse>
    /// Succeeds once the CALL frame is queued (calls may wait behind the server's limit).
    let started: EventLoopPromise<Void>
    private(set) var finalError: RPCError?
    private var finished = false

    init(kind: CallKind, eventLoop: any EventLoop) {
        self.kind = kind
        self.completion = eventLoop.makePromise(of: UnaryResponse.self)
        self.started = eventLoop.makePromise(of: Void.self)
    }

    func receive(_ message: InboundMessage) {
        _ = responseSource?.yield(message)
    }

    func succeed(_ response: UnaryResponse) {
        guard !finished else { return }
        finished = true
        responseSource?.finish()
        completion.succeed(response)
    }

    func fail(_ error: RPCError) {
        guard !finished else { return }
        finished = true
        finalError = error
        responseSource?.finish(error)
        started.fail(error)
        completion.fail(error)
    }
}

@available(*, unavailable)
extension ClientCall: Sendable {}
