import Testing

@testable import PassionCLI

/// The open loop's schedule, instant by instant: when each call is due and when it goes out.
@Suite struct BenchPacingTests {
    let start = ContinuousClock.now

    private func offset(_ instant: ContinuousClock.Instant) -> Duration { instant - start }

    @Test("without a tick every call goes out when it is due")
    func noTick() {
        let pacing = BenchCommand.Pacing(start: start, interval: 0.004, offset: 0.0015)
        for call in 0..<5 {
            #expect(pacing.sendTime(call) == pacing.due(call))
        }
        #expect(offset(pacing.due(3)) == .microseconds(13_500))
    }

    @Test("with a tick each call goes out at the start of the tick it is due in, never after it is due")
    func tickFloorsToItsStart() {
        // Due at 1.5, 5.5, 9.5, 13.5 ms: sent at 1, 5, 9, 13 ms on a 1 ms grid, at 0, 4, 8, 12 on a 4 ms one.
        let fine = BenchCommand.Pacing(start: start, interval: 0.004, offset: 0.0015, tick: .milliseconds(1))
        #expect((0..<4).map { offset(fine.sendTime($0)) } == [1, 5, 9, 13].map { Duration.milliseconds($0) })
        let coarse = BenchCommand.Pacing(start: start, interval: 0.004, offset: 0.0015, tick: .milliseconds(4))
        #expect((0..<4).map { offset(coarse.sendTime($0)) } == [0, 4, 8, 12].map { Duration.milliseconds($0) })
        for call in 0..<4 { #expect(coarse.sendTime(call) <= coarse.due(call)) }
    }

    @Test("the workers' calls due in one tick share one send instant, so their timers expire together")
    func workersShareATick() {
        // 8 workers at 8,000 calls/s: worker w's first call is due at w/8 ms, all within the first 1 ms tick.
        let workers = (0..<8).map {
            BenchCommand.Pacing(start: start, interval: 8 / 8_000, offset: Double($0) / 8_000, tick: .milliseconds(1))
        }
        #expect(Set(workers.map { offset($0.sendTime(0)) }) == [.zero])
        #expect(Set(workers.map { offset($0.sendTime(1)) }) == [.milliseconds(1)])
        #expect(Set(workers.map { offset($0.due(0)) }).count == 8)
    }
}

/// One connection's open loop, event by event at given instants: what goes out, when the timer
/// wakes, and when the connection is done.
@Suite struct OpenLoopScheduleTests {
    let start = ContinuousClock.now

    /// Calls due every 0.4 ms from 0.1 ms on, sent on a 1 ms grid, for a 2 ms window: calls 0–4
    /// (due 0.1, 0.5, 0.9, 1.3, 1.7 ms).
    private func schedule(slots: Int) -> OpenLoopSchedule {
        OpenLoopSchedule(
            pacing: BenchCommand.Pacing(start: start, interval: 0.0004, offset: 0.0001, tick: .milliseconds(1)),
            end: start + .milliseconds(2), slots: slots)
    }

    @Test("a tick's calls go out together at its start; the timer wakes for the next tick; calls due after the window never go")
    func ticks() {
        var schedule = schedule(slots: 8)
        #expect(schedule.wake == start)
        #expect(schedule.send(at: start) == 0..<3)
        #expect(schedule.send(at: start + .microseconds(999)).isEmpty)
        #expect(schedule.wake == start + .milliseconds(1))
        #expect(schedule.send(at: start + .milliseconds(1)) == 3..<5)
        #expect(schedule.wake == nil, "call 5 is due at 2.1 ms, after the window")
        #expect(schedule.send(at: start + .milliseconds(5)).isEmpty)
        for _ in 0..<4 { schedule.answered() }
        #expect(!schedule.isDone, "one call is still in flight")
        schedule.answered()
        #expect(schedule.isDone)
    }

    @Test("with every slot taken no timer is armed; an answer frees one and the late call goes out at once")
    func slots() {
        var schedule = schedule(slots: 2)
        #expect(schedule.send(at: start) == 0..<2)
        #expect(schedule.wake == nil, "call 2 is due but both slots are taken")
        #expect(schedule.send(at: start + .milliseconds(1)).isEmpty)
        schedule.answered()
        #expect(schedule.wake == start, "call 2 was due in the first tick: it is late, so it goes out now")
        #expect(schedule.send(at: start + .milliseconds(1)) == 2..<3)
        #expect(schedule.inFlight == 2)
        schedule.answered()
        schedule.answered()
        #expect(schedule.send(at: start + .milliseconds(1)) == 3..<5)
        schedule.answered()
        schedule.answered()
        #expect(schedule.isDone)
        #expect(schedule.next == 5)
    }

    @Test("before the first call's send time nothing goes out and the connection is not done")
    func early() {
        var schedule = OpenLoopSchedule(
            pacing: BenchCommand.Pacing(start: start, interval: 0.01, offset: 0.0025, tick: .milliseconds(1)),
            end: start + .milliseconds(20), slots: 1)
        #expect(schedule.send(at: start + .milliseconds(1)).isEmpty)
        #expect(!schedule.isDone)
        #expect(schedule.wake == start + .milliseconds(2))
        #expect(schedule.send(at: start + .milliseconds(2)) == 0..<1)
    }
}
