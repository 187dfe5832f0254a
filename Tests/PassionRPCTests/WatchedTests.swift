import PassionTestSupport
import Testing

/// The test helper that waits on events instead of sleeping: it must neither miss an update nor
/// hang past a cancel.
@Suite("Watched, the tests' wait on events", .timeLimit(.minutes(1)))
struct WatchedTests {
    @Test("a condition that already holds returns at once; one met later returns when it is")
    func waitsForTheUpdate() async {
        let watched = Watched(0)
        #expect(await watched.wait { $0 == 0 })
        let waiter = Task { await watched.wait { $0 >= 3 } }
        for _ in 0..<3 { watched.update { $0 += 1 } }
        #expect(await waiter.value)
        #expect(watched.value == 3)
    }

    @Test("a cancelled wait returns false, before and after it began waiting")
    func cancelledWaitReturns() async {
        let watched = Watched(false)
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await watched.wait { $0 }
        }
        #expect(await early.value == false)
        let late = Task { await watched.wait { $0 } }
        late.cancel()
        #expect(await late.value == false)
        // A cancelled waiter is gone: a later update resumes nothing twice.
        watched.update { $0 = true }
        #expect(await watched.wait { $0 })
    }
}
