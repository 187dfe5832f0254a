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
