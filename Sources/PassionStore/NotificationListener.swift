import Foundation
import Logging
import NIOPosix
import ServiceLifecycle
import Synchronization

/// What a listener delivers.
public enum ListenerEvent: Sendable, Equatable {
    /// The first connection listens: every NOTIFY committed from now on will be delivered.
    case listening
    /// A NOTIFY on one of the channels.
    case notification(channel: String, payload: String)
    /// The listener lost its connection and listens again: notifications sent in between were
    /// missed, so consumers catch up from the database (events carry ids for that).
    case reconnected
}

/// LISTENs on channels over a connection of its own and delivers NOTIFYs as they come, so every
/// server instance sees events raised in any instance's transactions. Reconnects by itself.
public final class NotificationListener: Service, Sendable {
    private let conninfo: String
    private let channels: [String]
    private let logger: Logger
    private let thread = NIOThreadPool(numberOfThreads: 1)
    private let stopping = Atomic<Bool>(false)
    private let continuation: AsyncStream<ListenerEvent>.Continuation
    /// Every event, in order. Single consumer.
    public let events: AsyncStream<ListenerEvent>
    /// Delay before reconnecting after the connection was lost.
    public let reconnectDelay: Duration

    /// `channels` must be plain identifiers (they become part of LISTEN statements).
    public init(conninfo: String, channels: [String], reconnectDelay: Duration = .milliseconds(200), logger: Logger) throws {
        guard channels.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" } }) else {
            throw EmbeddedPostgresError("listener channel names must be identifiers")
        }
        self.conninfo = conninfo.contains("://") ? conninfo : conninfo + " application_name=passion-listener"
        self.channels = channels
        self.logger = logger
        self.reconnectDelay = reconnectDelay
        (events, continuation) = AsyncStream.makeStream(of: ListenerEvent.self, bufferingPolicy: .bufferingNewest(10_000))
        thread.start()
    }

    /// Listens until cancelled or gracefully shut down.
    public func run() async throws {
        await withTaskCancellationHandler {
            await cancelWhenGracefulShutdown {
                await withTaskCancellationHandler {
                    _ = try? await self.thread.runIfActive { self.loop() }
                } onCancel: {
                    self.stopping.store(true, ordering: .relaxed)
                }
            }
        } onCancel: {
            self.stopping.store(true, ordering: .relaxed)
        }
        continuation.finish()
        try? await thread.shutdownGracefully()
    }

    /// Blocking: one connection at a time, polled in short slices so a stop is noticed fast.
    private func loop() {
        var everConnected = false
        var delay = reconnectDelay
        while !stopping.load(ordering: .relaxed) {
            do {
                let connection = try PostgresConnection(conninfo: conninfo, statementCacheSize: 0)
                for channel in channels { try connection.executeBlocking("LISTEN \(channel)") }
                delay = reconnectDelay
                if everConnected {
                    logger.notice("notification listener reconnected")
                    continuation.yield(.reconnected)
                } else {
                    continuation.yield(.listening)
                }
                everConnected = true
                while !stopping.load(ordering: .relaxed) {
                    for (channel, payload) in try connection.waitForNotifications(timeoutMilliseconds: 100) {
                        continuation.yield(.notification(channel: channel, payload: payload))
                    }
                }
            } catch {
                if stopping.load(ordering: .relaxed) { break }
                logger.warning("notification listener lost its connection; retrying", metadata: ["error": "\(error)", "retry_in": "\(delay)"])
                // Doubling up to 5 s: a database that stays down costs a connect attempt and a
                // log line every few seconds, not five a second.
                let (seconds, attoseconds) = delay.components
                let wakeAt = ContinuousClock.now + delay
                while !stopping.load(ordering: .relaxed), ContinuousClock.now < wakeAt {
                    Thread.sleep(forTimeInterval: min(0.1, Double(seconds) + Double(attoseconds) / 1e18))
                }
                delay = min(delay * 2, max(reconnectDelay, .seconds(5)))
            }
        }
    }
}
