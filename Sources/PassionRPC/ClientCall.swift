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

/// One call's client-side state; confined to its connection's event loop.
final class ClientCall {
    var id: UInt32 = 0
    let kind: CallKind
    var assembler = MessageAssembler()
    var requestClosed = false
    var initialMetadata = Metadata()
    private var singleResponse: ByteBuffer?
    private var extraResponse = false
    var responseSource: MessageStream.Producer.Source?
    let completion: EventLoopPromise<UnaryResponse>
    /// Succeeds once the CALL frame is written (calls may queue behind the server's limit).
    let started: EventLoopPromise<Void>
    private(set) var finalError: RPCError?
    private var finished = false

    init(kind: CallKind, eventLoop: any EventLoop) {
        self.kind = kind
        self.completion = eventLoop.makePromise(of: UnaryResponse.self)
        self.started = eventLoop.makePromise(of: Void.self)
    }

    /// Takes one response message.
    func receive(_ message: InboundMessage) {
        if kind.isSingleResponse {
            if singleResponse == nil { singleResponse = message.bytes } else { extraResponse = true }
            return
        }
        _ = responseSource?.yield(message)
    }

    func finish(trailers: TrailersHead) {
        guard !finished else { return }
        if let error = RPCError(trailers: trailers) {
            fail(error)
            return
        }
        if kind.isSingleResponse {
            guard let message = singleResponse, !extraResponse else {
                fail(RPCError(
                    code: .internal,
                    message: extraResponse ? "server sent more than one response message" : "server sent no response message"))
                return
            }
            finished = true
            completion.succeed(UnaryResponse(
                message: message, initialMetadata: initialMetadata, trailingMetadata: trailers.metadata))
        } else {
            finished = true
            responseSource?.finish()
            completion.succeed(UnaryResponse(
                message: ByteBuffer(), initialMetadata: initialMetadata, trailingMetadata: trailers.metadata))
        }
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
