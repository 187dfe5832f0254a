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
        // The caches' clock stands still: every repeat below is within their time.
        let clock = ManualMonotonicClock()
        let here = StoreAuthenticator(
            pool: pool, configuration: IdentityConfiguration(), logger: Logger(label: "session-cache-tests"), cacheClock: { clock.now })
        let (idleToken, idleHash) = SessionToken.generate()
        let (freshToken, freshHash) = SessionToken.generate()
        try await pool.withConnection { connection in
            try await connection.query("INSERT INTO users (id, email) VALUES (\(Self.user), 'd@example.com')")
            try await connection.query("""
                INSERT INTO sessions (id, user_id, expires_at, created_at, last_activity)
                VALUES (\(Bytes(idleHash)), \(Self.user), now() + interval '1 day', now() - interval '5 minutes', now() - interval '5 minutes'),
                       (\(Bytes(freshHash)), \(Self.user), now() + interval '1 day', now() - interval '5 minutes', now() - interval '30 seconds')
                """)
        }
        func lastActivityAge(_ hash: [UInt8]) async throws -> Int? {
            try await pool.withConnection { connection in
                try await connection.query("SELECT extract(epoch FROM now() - last_activity)::int8 AS age FROM sessions WHERE id = \(Bytes(hash))")
                    .first?.require("age", as: Int.self)
            }
        }
        /// Connections taken from the pool so far.
        func acquired() throws -> Int { try metrics.expectTimer("passion_db_pool_wait_seconds").values.count }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        await LoopReadiness.prepare(loop)
        try #require(LoopReadiness.isWatching(loop), "this kernel grants no AIO poll")
        await pool.sharedReads.prepare(loop)
        let executor = EventLoopTaskExecutor(eventLoop: loop)
        func onLoop<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
            try await Task(executorPreference: executor) { try await body() }.value
        }
        @Sendable func credentials(bearer token: String? = nil) -> CallCredentials {
            var metadata = Metadata()
            if let token { metadata.add("authorization", "Bearer \(token)") }
            return CallCredentials(
                method: MethodDescriptor(service: "passion.v1.Users", method: "Me", kind: .unary), metadata: metadata,
                peer: "127.0.0.1:40000", peerCertificate: nil)
        }

        var shared = pool.sharedReadsServed
        var taken = try acquired()
        #expect(try await onLoop { try await here.authenticate(credentials(bearer: idleToken)) }.id == Self.user.postgresText)
        #expect(pool.sharedReadsServed == shared + 1)
        #expect(try acquired() == taken + 1, "the idle session's write took a connection")
        #expect(try await lastActivityAge(idleHash) ?? 600 < 60, "a session idle 5 minutes was touched")

        shared = pool.sharedReadsServed
        taken = try acquired()
        #expect(try await onLoop { try await here.authenticate(credentials(bearer: freshToken)) }.id == Self.user.postgresText)
        #expect(pool.sharedReadsServed == shared + 1)
        #expect(try acquired() == taken, "a session active 30 s ago is only read")
        #expect(try await lastActivityAge(freshHash) ?? 0 >= 30)

        let service = Principal(kind: .service, id: "game-server", actingForUser: Self.user.postgresText)
        shared = pool.sharedReadsServed
        taken = try acquired()
        try await onLoop { try await here.admit(service, credentials: credentials()) }
        #expect(pool.sharedReadsServed == shared + 1)
        #expect(try acquired() == taken)

        // Again, within the caches' time: no read at all, and the metrics tell hits from misses.
        shared = pool.sharedReadsServed
        taken = try acquired()
        _ = try await onLoop { try await here.authenticate(credentials(bearer: idleToken)) }
        try await onLoop { try await here.admit(service, credentials: credentials()) }
        #expect(pool.sharedReadsServed == shared)
        #expect(try acquired() == taken)
        for (cache, result, count) in [("session", "hit", 1), ("session", "miss", 2), ("live_user", "hit", 1), ("live_user", "miss", 1)] {
            let counted = try metrics.expectCounter("passion_auth_cache_lookups_total", [("cache", cache), ("result", result)])
            #expect(counted.totalValue == Int64(count), "\(cache) \(result)")
        }
        await pool.shutdown()
        try await group.shutdownGracefully()
    }
}
