import Foundation
import NIOCore
import PassionRPCServer
import PassionTestSupport
import Synchronization
import Testing

/// `passion bench --rate` against a server that answers slower than calls come due.
@Suite("Command line: the open loop's cap on calls in flight")
struct BenchOpenLoopTests {
    @Test("--concurrency caps the open loop's calls in flight; the calls due meanwhile still go out, late, and all count at the rate served")
    func capsCallsInFlight() async throws {
        let load = Mutex((inFlight: 0, most: 0, answered: 0))
        let echo = MethodDescriptor(service: "passion.v1.Diagnostics", method: "Echo", kind: .unary)
        try await TestServer.with(routes: { router in
            router.register(echo, .unary { _, _ in
                load.withLock {
                    $0.inFlight += 1
                    $0.most = max($0.most, $0.inFlight)
                }
                // Holds its slot past the next call's due time (every 10 ms): uncapped, three
                // calls would overlap.
                try await Task.sleep(for: .milliseconds(25))
                load.withLock {
                    $0.inFlight -= 1
                    $0.answered += 1
                }
                return ByteBuffer()
            })
        }) { server in
            let result = try await Executables.run("passion", [
                "bench", "Diagnostics/Echo", "-d", "{}", "--rate", "100", "--duration", "1s", "--warmup", "0s",
                "--connections", "1", "--concurrency", "1", "--json",
                "--server", "127.0.0.1:\(server.port)", "--ca", server.certificates.caPath,
            ])
            #expect(result.status == 0, "\(result.stderr)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            #expect(report["calls"] as? Int == 100, "\(result.stdout)")
            // One slot held 25 ms a call serves at most 40 calls a second: the report says so
            // (over the 2.5 s the window's calls took), beside the 100 a second offered. Both
            // bounds follow from sleeps, which never end early: a slow machine only lowers the
            // served rate further, so neither can fail for want of speed.
            #expect(report["offered_qps"] as? Double == 100)
            let served = try #require(report["qps"] as? Double)
            #expect(served <= 40 && served > 0, "\(result.stdout)")
            #expect((report["seconds"] as? Double ?? 0) >= 2.5)
            let seen = load.withLock { $0 }
            #expect(seen.most == 1)
            #expect(seen.answered == 100)
        }
    }

    @Test(
        "a server that goes away mid-run, thousands of calls behind: every call of the window is counted, the refused ones by status, and bench exits cleanly",
        .timeLimit(.minutes(1)))
    func serverGoesAway() async throws {
        let (entered, signal) = AsyncStream.makeStream(of: Int.self)
        let answered = Mutex(0)
        let echo = MethodDescriptor(service: "passion.v1.Diagnostics", method: "Echo", kind: .unary)
        let server = try await TestServer.start(routes: { router in
            router.register(echo, .unary { _, _ in
                signal.yield(answered.withLock { $0 += 1; return $0 })
                // A slow server, not a wait for something: the bench's schedule runs on the real
                // clock in another process, so only real time makes calls fall behind. Nothing
                // below depends on how long it takes; a slower machine only adds to the backlog.
                try await Task.sleep(for: .milliseconds(50))
                return ByteBuffer()
            })
        })
        // One slot, 50 ms a call, 20,000 calls a second: by the 20th call some 20,000 wait for
        // the slot. When the server goes, each is refused at once, inside its own start.
        let bench = Task {
            try await Executables.run("passion", [
                "bench", "Diagnostics/Echo", "-d", "{}", "--rate", "20000", "--duration", "2s", "--warmup", "0s",
                "--connections", "1", "--concurrency", "1", "--json",
                "--server", "127.0.0.1:\(server.port)", "--ca", server.certificates.caPath,
            ])
        }
        for await count in entered where count >= 20 { break }
        await server.stop()
        let result = try await bench.value
        #expect(result.status == 0, "\(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let errors = report["errors"] as? [String: Int] ?? [:]
        #expect((report["calls"] as? Int ?? 0) + errors.values.reduce(0, +) == 40_000, "\(result.stdout)")
        #expect(errors.values.reduce(0, +) > 10_000, "\(result.stdout)")
    }
}
