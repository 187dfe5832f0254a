import PassionWire
import Testing

@Suite("Monotonic instants")
struct MonotonicInstantTests {
    @Test("converting to and from ContinuousClock keeps the instant; arithmetic and order match ContinuousClock's")
    func matchesContinuousClock() {
        let instant = ContinuousClock.now
        let earlier = instant - .seconds(90)
        let later = instant + .milliseconds(1500)
        #expect(MonotonicInstant(instant).continuousInstant == instant)
        #expect(MonotonicInstant(earlier).continuousInstant == earlier)
        #expect(MonotonicInstant(instant) + .milliseconds(1500) == MonotonicInstant(later))
        #expect(MonotonicInstant(instant) - .seconds(90) == MonotonicInstant(earlier))
        #expect(MonotonicInstant(earlier).duration(to: MonotonicInstant(later)) == earlier.duration(to: later))
        #expect(MonotonicInstant(later).duration(to: MonotonicInstant(earlier)) == later.duration(to: earlier))
        #expect(MonotonicInstant(earlier) < MonotonicInstant(instant))
        #expect(!(MonotonicInstant(later) < MonotonicInstant(instant)))
        #expect(MonotonicInstant(instant) == MonotonicInstant(instant))
    }
}
