import NIOCore
import PassionClient

extension BenchCommand {
    /// An open-loop schedule: call k on this schedule is due at start + offset + k·interval, and
    /// sent at the start of the tick it falls in.
    struct Pacing: Sendable {
        var start: ContinuousClock.Instant
        var interval: Double
        var offset: Double
        var tick: Duration = .zero

        func due(_ call: Int) -> ContinuousClock.Instant {
            start + .nanoseconds(dueNanoseconds(call))
        }

        /// Every connection's calls due in one tick share its start, so one timer wake-up on
        /// the event loop starts them all and flushes them in one write per connection.
        func sendTime(_ call: Int) -> ContinuousClock.Instant {
            let due = dueNanoseconds(call)
            let tickNanoseconds = tick.components.seconds * 1_000_000_000 + tick.components.attoseconds / 1_000_000_000
            guard tickNanoseconds > 0 else { return start + .nanoseconds(due) }
            return start + .nanoseconds(due - due % tickNanoseconds)
        }

        /// Capped at about 292 years, which ends any window, so a tiny --rate cannot overflow.
        private func dueNanoseconds(_ call: Int) -> Int64 {
            Int64(min(((offset + Double(call) * interval) * 1e9).rounded(), 9.2e18))
        }
    }
}

/// Which of one connection's open-loop calls go out when: those whose send time has come, as long
/// as a slot is free, until the first call due at or after the window's end. Pure, so its events
/// are tested one by one against given instants.
struct OpenLoopSchedule: Sendable {
    let pacing: BenchCommand.Pacing
    let end: ContinuousClock.Instant
    /// Calls this connection may have in flight at once.
    let slots: Int
    /// The next call of the schedule not yet sent.
    private(set) var next = 0
    private(set) var inFlight = 0

    init(pacing: BenchCommand.Pacing, end: ContinuousClock.Instant, slots: Int) {
        self.pacing = pacing
        self.end = end
        self.slots = max(slots, 1)
    }

    /// The calls to send at `now`, counted as in flight from here on.
    mutating func send(at now: ContinuousClock.Instant) -> Range<Int> {
        let first = next
        while inFlight < slots, pacing.due(next) < end, pacing.sendTime(next) <= now {
            next += 1
            inFlight += 1
        }
        return first..<next
    }

    /// One call answered (or failed), freeing its slot.
    mutating func answered() {
        inFlight -= 1
    }

    /// When the next call goes out, if a timer must wake for it; nil while every slot is taken
    /// (an answer frees one) or once no call is left.
    var wake: ContinuousClock.Instant? {
        guard inFlight < slots, pacing.due(next) < end else { return nil }
        return pacing.sendTime(next)
    }

    /// Every call of the window was sent and answered.
    var isDone: Bool { inFlight == 0 && pacing.due(next) >= end }
}

/// Runs one connection's `OpenLoopSchedule` on its event loop: a timer wakes at each send time
/// and starts the calls due, and each answer's callback tallies it and frees its slot.
final class OpenLoopDriver {
    private let connection: ClientConnection
    private let calls: CallMaker
    private let window: Window
    private var schedule: OpenLoopSchedule
    private let done: EventLoopPromise<WorkerResult>
    private var result = WorkerResult()
    private var random = FastRandom()
    private var timer: (at: ContinuousClock.Instant, task: Scheduled<Void>, generation: Int)?
    /// Numbers timers: a cancelled one NIO had already taken up in this loop turn still runs,
    /// and must not forget the timer armed after it.
    private var timerGeneration = 0
    private var finished = false
    private var pumping = false
    private var pumpAgain = false

    private init(connection: ClientConnection, calls: CallMaker, window: Window, schedule: OpenLoopSchedule) {
        self.connection = connection
        self.calls = calls
        self.window = window
        self.schedule = schedule
        self.done = connection.eventLoop.makePromise()
    }

    /// The connection's tally once its last call of the window has answered.
    static func run(connection: ClientConnection, calls: CallMaker, window: Window, schedule: OpenLoopSchedule) async -> WorkerResult {
        let loop = connection.eventLoop
        let result = loop.flatSubmit {
            let driver = OpenLoopDriver(connection: connection, calls: calls, window: window, schedule: schedule)
            driver.pump()
            return driver.done.futureResult
        }
        // The promise is only ever succeeded.
        return (try? await result.get()) ?? WorkerResult()
    }

    /// Starts the calls due and arms the timer for the next. A call can fail inside its own start
    /// (the connection closing refuses it at once), and its callback asks for another pump: that
    /// one runs here, as a loop, instead of recursing as deep as the calls waiting for a slot.
    private func pump() {
        guard !pumping else {
            pumpAgain = true
            return
        }
        pumping = true
        defer { pumping = false }
        repeat {
            pumpAgain = false
            for call in schedule.send(at: ContinuousClock.now) { start(call) }
        } while pumpAgain
        if schedule.isDone {
            arm(nil)
            if !finished { done.succeed(result) }
            finished = true
            return
        }
        arm(schedule.wake)
    }

    private func start(_ call: Int) {
        let due = schedule.pacing.due(call)
        let sent = schedule.pacing.sendTime(call)
        let answer: EventLoopFuture<UnaryResponse>
        do {
            let (request, options) = try calls.next(random: &random)
            answer = connection.startUnary(calls.method, request: request, options: options)
        } catch {
            answer = connection.eventLoop.makeFailedFuture(error)
        }
        let loopBound = NIOLoopBound(self, eventLoop: connection.eventLoop)
        answer.whenComplete { outcome in
            let driver = loopBound.value
            var failure: StatusCode?
            if case .failure(let error) = outcome { failure = (error as? RPCError)?.code ?? .unknown }
            driver.window.record(&driver.result, due: due, sent: sent, failure: failure)
            driver.schedule.answered()
            driver.pump()
        }
    }

    /// One timer at a time, for the next send time; an answer that comes first leaves it be.
    private func arm(_ at: ContinuousClock.Instant?) {
        if let timer, timer.at == at { return }
        timer?.task.cancel()
        timer = nil
        guard let at else { return }
        timerGeneration += 1
        let generation = timerGeneration
        let loopBound = NIOLoopBound(self, eventLoop: connection.eventLoop)
        let task = connection.eventLoop.scheduleTask(in: TimeAmount(ContinuousClock.now.duration(to: at))) {
            let driver = loopBound.value
            if driver.timer?.generation == generation { driver.timer = nil }
            driver.pump()
        }
        timer = (at, task, generation)
    }
}
