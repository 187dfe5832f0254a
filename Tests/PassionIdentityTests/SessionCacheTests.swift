import Foundation
import Logging
import MetricsTestKit
import NIOCore
import NIOPosix
import PassionIdentity
import PassionRPC
import PassionRPCServer
@testable import PassionStore
import PassionTestSupport
import PassionWire
import Synchronization
import Testing

/// A monotonic clock that moves only when the test says.
final class ManualMonotonicClock: Sendable {
    private let origin = MonotonicInstant.now
    private let elapsed = Mutex(Duration.zero)

    var now: MonotonicInstant { origin + elapsed.withLock { $0 } }

    func advance(_ duration: Duration) { elapsed.withLock { $0 += duration } }
}

/// The session cache's bound, event by event on an injected clock: how long an instance may
/// still accept a session another instance signed out (README "Running more than one instance").
@Suite("Session cache")
struct SessionCacheTests {
    static let user = UUID(uuidString: "00000000-0000-0000-0000-0000000000d1") ?? UUID()

    @Test("a session signed out elsewhere is accepted here for at most the cache's 2 s, then refused as TOKEN_REVOKED")
    func signedOutElsewhere() async throws {
        let pool = try await TestDatabase.migratedPool(size: 2)
        defer { Task { await pool.shutdown() } }
        let clock = ManualMonotonicClock()
        let configuration = IdentityConfiguration()
        #expect(configuration.sessionCacheTTL == .seconds(2))
        let here = StoreAuthenticator(
            pool: pool, configuration: configuration, logger: Logger(label: "session-cache-tests"), cacheClock: { clock.now })
        let (token, hash) = SessionToken.generate()
        try await pool.withConnection { connection in
            try await connection.query("INSERT INTO users (id, email) VALUES (\(Self.user), 'd@example.com')")
            try await connection.query("INSERT INTO sessions (id, user_id, expires_at) VALUES (\(Bytes(hash)), \(Self.user), now() + interval '1 day')")
        }
        var metadata = Metadata()
        metadata.add("authorization", "Bearer \(token)")
        let call = CallCredentials(
            method: MethodDescriptor(service: "passion.v1.Users", method: "Me", kind: .unary), metadata: metadata,
            peer: "127.0.0.1:40000", peerCertificate: nil)

        // Verified in the database, then cached.
        #expect(try await here.authenticate(call).id == Self.user.postgresText)
        // Another instance signs the session out: only the database knows.
        try await pool.withConnection { connection in
            try await connection.query("UPDATE sessions SET revoked_at = now() WHERE id = \(Bytes(hash))")
        }
        clock.advance(.milliseconds(1999))
        #expect(try await here.authenticate(call).id == Self.user.postgresText, "trusted from the cache within its 2 s")
        clock.advance(.milliseconds(1))
        let refused = await #expect(throws: RPCError.self) { try await here.authenticate(call) }
        #expect(refused?.code == .unauthenticated && refused?.details?.reason == "TOKEN_REVOKED", "\(String(describing: refused))")
        // And stays refused: a refusal is never cached as a session.
        clock.advance(.seconds(60))
        await #expect(throws: RPCError.self) { try await here.authenticate(call) }
    }

    @Test("the session and live-user checks read on the calling loop's shared connection; only a minute-old session is written to")
    func checksShareTheLoopsConnection() async throws {
        let metrics = TestMetrics()
        let pool = try await TestDatabase.migratedPool(size: 2) { $0.metrics = metrics }
        defer { Task { await pool.shutdown() } }
        let here = StoreAuthenticator(pool: pool, configuration: IdentityConfiguration(), logger: Logger(label: "session-cache-tests"))
        let (token, hash) = SessionToken.generate()
        try await pool.withConnection { connection in
            try await connection.query("INSERT INTO users (id, email) VALUES (\(Self.user), 'd@example.com')")
            try await connection.query("""
                INSERT INTO sessions (id, user_id, expires_at, created_at, last_activity)
                VALUES (\(Bytes(hash)), \(Self.user), now() + interval '1 day', now() - interval '5 minutes', now() - interval '5 minutes')
                """)
        }
        func lastActivityAge() async throws -> Int? {
            try await pool.withConnection { connection in
                try await connection.query("SELECT extract(epoch FROM now() - last_activity)::int8 AS age FROM sessions WHERE id = \(Bytes(hash))")
                    .first?.require("age", as: Int.self)
            }
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        await LoopReadiness.prepare(loop)
        try #require(LoopReadiness.isWatching(loop), "this kernel grants no AIO poll")
        await pool.sharedReads.prepare(loop)
        let executor = EventLoopTaskExecutor(eventLoop: loop)
        func credentials(_ metadata: Metadata) -> CallCredentials {
            CallCredentials(
                method: MethodDescriptor(service: "passion.v1.Users", method: "Me", kind: .unary), metadata: metadata,
                peer: "127.0.0.1:40000", peerCertificate: nil)
        }

        var bearer = Metadata()
        bearer.add("authorization", "Bearer \(token)")
        let shared = pool.sharedReadsServed
        let user = try await Task(executorPreference: executor) { try await here.authenticate(credentials(bearer)) }.value
        #expect(user.id == Self.user.postgresText)
        #expect(pool.sharedReadsServed == shared + 1)
        #expect(try await lastActivityAge() ?? 600 < 60, "a session idle 5 minutes was touched")

        let service = Principal(kind: .service, id: "game-server", actingForUser: Self.user.postgresText)
        try await Task(executorPreference: executor) { try await here.admit(service, credentials: credentials(Metadata())) }.value
        #expect(pool.sharedReadsServed == shared + 2)

        // Again within the caches' 2 s: no read at all, and the metrics tell hits from misses.
        _ = try await here.authenticate(credentials(bearer))
        try await here.admit(service, credentials: credentials(Metadata()))
        #expect(pool.sharedReadsServed == shared + 2)
        for cache in ["session", "live_user"] {
            for result in ["hit", "miss"] {
                let counted = try metrics.expectCounter("passion_auth_cache_lookups_total", [("cache", cache), ("result", result)])
                #expect(counted.totalValue == 1, "\(cache) \(result)")
            }
        }
        await pool.shutdown()
        try await group.shutdownGracefully()
    }
}
