/// When a loop's shared read connection stops taking reads: once it has owed answers for
/// `limit` without giving one. Its backend is then held up (by a lock, a slow read or a stop of
/// the server), and every read sent behind would wait as long.
///
/// Not the age of the oldest read owed: under load a read queues behind the batches sent before
/// it, so its age grows with the load while the backend answers steadily, and turning reads away
/// then sends them to pool connections that cost each read a backend wake-up of its own, which
/// is more CPU when the machine has least to spare.
struct StallWatch: Sendable {
    let limit: Duration
    /// Since when answers have been owed without one coming; nil while nothing is owed.
    private(set) var waitingSince: ContinuousClock.Instant?

    init(limit: Duration) {
        self.limit = limit
    }

    /// A read is sent while nothing was owed.
    mutating func owing(from now: @autoclosure () -> ContinuousClock.Instant) {
        if waitingSince == nil { waitingSince = now() }
    }

    /// Answers arrived at `now`; `stillOwing` says whether reads sent after them are still owed.
    mutating func answered(at now: ContinuousClock.Instant, stillOwing: Bool) {
        waitingSince = stillOwing ? now : nil
    }

    /// Whether another read may be sent behind those owed.
    func takesReads(at now: @autoclosure () -> ContinuousClock.Instant) -> Bool {
        guard let waitingSince else { return true }
        return now() - waitingSince < limit
    }
}
