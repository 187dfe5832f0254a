import Logging
import NIOCore
import NIOEmbedded
@testable import PassionRPC
import PassionWire
import Testing

/// A closed connection must leave nothing behind: its handler (and with it the pipeline, the
/// buffers, the zlib states) is freed once the channel is gone. Measured from outside this was
/// ~100 KB per connection (tools/probe/connections.py churn).
@Suite("Closed connections are freed")
struct ConnectionLeakTests {
    /// Runs a connection on an embedded channel to the point `drive` takes it, closes it, and
    /// returns whether its handler is still alive afterwards.
    static func handlerOutlivesClose(_ drive: (EmbeddedChannel) throws -> Void) throws -> Bool {
        weak var weakHandler: ServerConnectionHandler?
        try {
            let channel = EmbeddedChannel()
            let handler = ServerConnectionHandler(
                configuration: ServerConnectionConfiguration(), router: RPCRouter(), authenticator: AnonymousAuthenticator(),
                logger: Logger(label: "leak-test"))
            weakHandler = handler
            try channel.pipeline.syncOperations.addHandler(handler)
            channel.pipeline.fireChannelActive()
            try drive(channel)
            _ = try? channel.finish(acceptAlreadyClosed: true)
            channel.embeddedEventLoop.run()
        }()
        return weakHandler != nil
    }

    static var prefaceAndHello: ByteBuffer {
        var buffer = ByteBuffer(bytes: ConnectionPreface.bytes)
        FrameWriter.writeHello(ConnectionSettings().hello, into: &buffer)
        return buffer
    }

    @Test("the server's handler is freed after close: before HELLO, after HELLO, after a protocol error")
    func serverHandlerFreed() throws {
        #expect(try !Self.handlerOutlivesClose { _ in })
        #expect(try !Self.handlerOutlivesClose { channel in try channel.writeInbound(Self.prefaceAndHello) })
        #expect(try !Self.handlerOutlivesClose { channel in
            try channel.writeInbound(Self.prefaceAndHello)
            try channel.writeInbound(ByteBuffer(bytes: [0, 0, 0, 0, 0x7F, 0, 0, 0, 0, 0]))  // unknown frame type
        })
    }

    @Test("the client's handler is freed after close")
    func clientHandlerFreed() throws {
        weak var weakHandler: ClientConnectionHandler?
        try {
            let channel = EmbeddedChannel()
            let handler = ClientConnectionHandler(settings: ConnectionSettings(), ready: channel.eventLoop.makePromise())
            weakHandler = handler
            try channel.pipeline.syncOperations.addHandler(handler)
            channel.pipeline.fireChannelActive()
            var hello = ByteBuffer()
            FrameWriter.writeHello(ServerConnectionConfiguration().settings.hello, into: &hello)
            try channel.writeInbound(hello)
            _ = try? channel.finish(acceptAlreadyClosed: true)
            handler.ready.fail(ChannelError.ioOnClosedChannel)
        }()
        #expect(weakHandler == nil)
    }
}
