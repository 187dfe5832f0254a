import Testing

@testable import PassionStore

/// When a shared read connection turns reads away, event by event with given instants.
@Suite struct StallWatchTests {
    let start = ContinuousClock.now
    let limit = Duration.milliseconds(1)

    private func at(_ microseconds: Int) -> ContinuousClock.Instant { start + .microseconds(microseconds) }

    @Test("owing nothing, it takes reads however long it has been idle")
    func idleTakes() {
        let watch = StallWatch(limit: limit)
        #expect(watch.takesReads(at: at(0)))
        #expect(watch.takesReads(at: at(60_000_000)))
    }

    @Test("owed answers and none coming: it takes reads until the limit has passed since the first was sent, not since the last")
    func noAnswerUntilTheLimit() {
        var watch = StallWatch(limit: limit)
        watch.owing(from: at(0))
        watch.owing(from: at(600))
        #expect(watch.takesReads(at: at(999)))
        #expect(!watch.takesReads(at: at(1_000)))
        #expect(!watch.takesReads(at: at(5_000)))
    }

    @Test("answers coming steadily: it takes reads even when the oldest still owed was sent long before the limit")
    func steadyAnswersKeepItOpen() {
        var watch = StallWatch(limit: limit)
        watch.owing(from: at(0))
        // The first batch answered at 0.9 ms, the next (sent behind it at 0.1 ms) still owed.
        watch.answered(at: at(900), stillOwing: true)
        #expect(watch.takesReads(at: at(1_500)), "the oldest owed has waited 1.4 ms, but an answer came 0.6 ms ago")
        watch.answered(at: at(1_800), stillOwing: true)
        #expect(watch.takesReads(at: at(2_700)))
        #expect(!watch.takesReads(at: at(2_800)), "1 ms since the last answer")
    }

    @Test("once everything owed is answered, the next read starts a fresh wait")
    func answeredInFullStartsOver() {
        var watch = StallWatch(limit: limit)
        watch.owing(from: at(0))
        #expect(!watch.takesReads(at: at(1_200)))
        watch.answered(at: at(3_000), stillOwing: false)
        #expect(watch.waitingSince == nil)
        #expect(watch.takesReads(at: at(50_000)))
        watch.owing(from: at(50_000))
        #expect(watch.takesReads(at: at(50_999)))
        #expect(!watch.takesReads(at: at(51_000)))
    }

    @Test("a zero limit turns every read away while any is owed")
    func zeroLimit() {
        var watch = StallWatch(limit: .zero)
        #expect(watch.takesReads(at: at(0)))
        watch.owing(from: at(0))
        #expect(!watch.takesReads(at: at(0)))
    }
}
