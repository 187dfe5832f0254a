import Foundation
import PassionServerAPI
import PassionClient
import PassionRPCServer
import PassionServices
import PassionStore
import PassionTestSupport
import Testing

/// A user in a time zone, a habit, and a clock the test moves: every call goes through the
/// whole stack, and the database does the day arithmetic at the clock's instant.
struct StreakScenario {
    let harness: ServiceHarness
    let clock: TestClock
    let user: ServiceHarness.SignedIn
    var zone: String

    static func with(zone: String, _ body: (inout StreakScenario) async throws -> Void) async throws {
        let clock = TestClock()
        try await ServiceHarness.with(clock: clock) { harness in
            let user = try await harness.signIn()
            var scenario = StreakScenario(harness: harness, clock: clock, user: user, zone: zone)
            try await scenario.moveTo(zone)
            try await body(&scenario)
        }
    }

    var options: CallOptions { .session(user.token) }

    mutating func moveTo(_ zone: String) async throws {
        self.zone = zone
        _ = try await harness.connection.users.updateProfile(options: options) {
            $0.timeZone = zone
            $0.updateMask.paths = ["time_zone"]
        }
    }

    /// A habit created at local `time`.
    func habit(_ frequency: String = "daily", at time: String) async throws -> String {
        clock.set(time, in: zone)
        return try await harness.connection.habits.create(options: options) {
            $0.habit.title = "Stretch"
            $0.habit.frequency = frequency
        }.id
    }

    /// Completes at local `time` (for yesterday when asked); returns the completion's date and the new streak.
    @discardableResult
    func complete(_ habit: String, at time: String, yesterday: Bool = false) async throws -> (date: String, streak: Int32) {
        clock.set(time, in: zone)
        let response = try await harness.connection.habits.complete(options: options) {
            $0.habitID = habit
            $0.yesterday = yesterday
        }
        return (response.completion.completionDate, response.habit.streak)
    }

    /// The streak a read shows at local `time`.
    func streak(_ habit: String, at time: String) async throws -> Int32 {
        clock.set(time, in: zone)
        return try await harness.connection.habits.get(options: options) { $0.habitID = habit }.streak
    }
}

@Suite("Streaks in the user's time zone")
struct StreakTests {
    @Test("daily: consecutive local days count, a missed day reads 0, yesterday until noon")
    func daily() async throws {
        try await StreakScenario.with(zone: "Europe/Berlin") { s in
            let habit = try await s.habit(at: "2026-11-20 08:00")
            #expect(try await s.complete(habit, at: "2026-11-20 08:00") == ("2026-11-20", 1))
            #expect(try await s.complete(habit, at: "2026-11-21 23:59") == ("2026-11-21", 2))
            // 00:30 on the 23rd, the 22nd forgotten: it can still be done for yesterday.
            #expect(try await s.streak(habit, at: "2026-11-23 00:30") == 2)
            #expect(try await s.complete(habit, at: "2026-11-23 00:30", yesterday: true) == ("2026-11-22", 3))
            #expect(try await s.complete(habit, at: "2026-11-23 07:00") == ("2026-11-23", 4))
            // The 24th passes without it: it can be done for yesterday until noon on the 25th, and
            // from then on the streak reads 0.
            #expect(try await s.streak(habit, at: "2026-11-24 22:00") == 4)
            #expect(try await s.streak(habit, at: "2026-11-25 11:59") == 4)
            #expect(try await s.streak(habit, at: "2026-11-25 12:00") == 0)
            // Too late for yesterday after noon.
            s.clock.set("2026-11-25 12:00", in: s.zone)
            let late = await expectRPCError(.failedPrecondition) {
                try await s.harness.connection.habits.complete(options: s.options) {
                    $0.habitID = habit
                    $0.yesterday = true
                }
            }
            #expect(late?.details?.reason == "GRACE_WINDOW_CLOSED")
            #expect(try await s.complete(habit, at: "2026-11-25 12:00") == ("2026-11-25", 1))
        }
    }

    @Test("DST: spring forward and fall back keep local days (Europe/Berlin, America/New_York)")
    func daylightSaving() async throws {
        try await StreakScenario.with(zone: "Europe/Berlin") { s in
            // 2026-03-29 02:00 → 03:00: that day has 23 hours.
            let habit = try await s.habit(at: "2026-03-27 23:30")
            #expect(try await s.complete(habit, at: "2026-03-27 23:30") == ("2026-03-27", 1))
            #expect(try await s.complete(habit, at: "2026-03-28 23:30") == ("2026-03-28", 2))
            #expect(try await s.complete(habit, at: "2026-03-29 00:30") == ("2026-03-29", 3))
            #expect(try await s.complete(habit, at: "2026-03-30 23:59") == ("2026-03-30", 4))
            // 2026-10-25 03:00 → 02:00: that day has 25 hours.
            let autumn = try await s.habit(at: "2026-10-24 00:10")
            #expect(try await s.complete(autumn, at: "2026-10-24 00:10") == ("2026-10-24", 1))
            #expect(try await s.complete(autumn, at: "2026-10-25 23:50") == ("2026-10-25", 2))
            #expect(try await s.complete(autumn, at: "2026-10-26 00:05") == ("2026-10-26", 3))
            #expect(try await s.streak(autumn, at: "2026-10-27 23:59") == 3)
        }
        try await StreakScenario.with(zone: "America/New_York") { s in
            // 2026-03-08 spring forward, 2026-11-01 fall back; 23:30 local is the next UTC day.
            let habit = try await s.habit(at: "2026-03-07 23:30")
            for day in ["2026-03-07", "2026-03-08", "2026-03-09"] {
                _ = try await s.complete(habit, at: "\(day) 23:30")
            }
            #expect(try await s.streak(habit, at: "2026-03-10 01:00") == 3)
            let autumn = try await s.habit(at: "2026-10-31 23:30")
            for day in ["2026-10-31", "2026-11-01", "2026-11-02"] {
                #expect(try await s.complete(autumn, at: "\(day) 23:30").date == day)
            }
            #expect(try await s.streak(autumn, at: "2026-11-03 10:00") == 3)
        }
    }

    @Test("UTC+14 and UTC−12: one instant, two local days, each streak in its own zone")
    func farZones() async throws {
        // 2026-11-25 10:30 UTC is the 26th 00:30 in Kiritimati and the 24th 22:30 at UTC−12.
        let instant = TestClock.date("2026-11-25 10:30", in: "UTC")
        try await StreakScenario.with(zone: "Pacific/Kiritimati") { s in
            let habit = try await s.habit(at: "2026-11-25 00:10")
            _ = try await s.complete(habit, at: "2026-11-25 00:10")
            s.clock.set(instant)
            let response = try await s.harness.connection.habits.complete(options: s.options) { $0.habitID = habit }
            #expect(response.completion.completionDate == "2026-11-26")
            #expect(response.habit.streak == 2)
        }
        try await StreakScenario.with(zone: "Etc/GMT+12") { s in
            let habit = try await s.habit(at: "2026-11-23 23:50")
            _ = try await s.complete(habit, at: "2026-11-23 23:50")
            s.clock.set(instant)
            let response = try await s.harness.connection.habits.complete(options: s.options) { $0.habitID = habit }
            #expect(response.completion.completionDate == "2026-11-24")
            #expect(response.habit.streak == 2)
        }
    }

    @Test("a user changing time zone keeps the streak: flying west loses nothing, flying east completes yesterday in the grace window")
    func changingZone() async throws {
        try await StreakScenario.with(zone: "Asia/Tokyo") { s in
            let habit = try await s.habit(at: "2026-11-20 09:00")
            let onlyLater = try await s.habit(at: "2026-11-20 09:00")
            _ = try await s.complete(habit, at: "2026-11-20 09:00")
            _ = try await s.complete(habit, at: "2026-11-21 09:00")
            _ = try await s.complete(onlyLater, at: "2026-11-21 09:00")
            // Flying to Los Angeles: the 21st there is still today; the streak stands.
            try await s.moveTo("America/Los_Angeles")
            // On the 20th in Los Angeles both habits have a completion dated ahead (the 21st);
            // only the first has one on the 20th, so only it is done today.
            s.clock.set("2026-11-20 17:00", in: s.zone)
            let today = try await s.harness.connection.habits.today(TodayRequest(), options: s.options)
            #expect(today.date == "2026-11-20")
            #expect(Dictionary(uniqueKeysWithValues: today.habits.map { ($0.habit.id, $0.status) }) == [habit: "completed", onlyLater: "pending"])
            // History's default range still holds the completions dated ahead of the local today.
            let history = try await s.harness.connection.habits.history(options: s.options) { $0.habitID = habit }
            #expect(history.completions.map(\.completionDate) == ["2026-11-21", "2026-11-20"])
            #expect(try await s.streak(habit, at: "2026-11-21 08:00") == 2)
            // The 21st was already completed (in Tokyo): once per day, and the call answers that
            // completion again.
            s.clock.set("2026-11-21 08:00", in: s.zone)
            let again = try await s.harness.connection.habits.complete(options: s.options) { $0.habitID = habit }
            #expect(again.reward.replayed && again.completion.completionDate == "2026-11-21")
            #expect(try await s.complete(habit, at: "2026-11-22 20:00") == ("2026-11-22", 3))
            // Flying back east loses a night: at 08:00 on the 24th in Tokyo the 23rd is yesterday,
            // still open until noon.
            try await s.moveTo("Asia/Tokyo")
            #expect(try await s.streak(habit, at: "2026-11-24 08:00") == 3)
            #expect(try await s.complete(habit, at: "2026-11-24 08:00", yesterday: true) == ("2026-11-23", 4))
            #expect(try await s.streak(habit, at: "2026-11-24 08:01") == 4)
        }
    }

    @Test("weekly across ISO week 53, monthly across month ends, daily across a leap day")
    func calendarEdges() async throws {
        try await StreakScenario.with(zone: "UTC") { s in
            // 2026 has an ISO week 53 (Dec 28 – Jan 3).
            let weekly = try await s.habit("weekly", at: "2026-12-21 10:00")
            _ = try await s.complete(weekly, at: "2026-12-22 10:00")
            _ = try await s.complete(weekly, at: "2026-12-30 10:00")
            #expect(try await s.complete(weekly, at: "2027-01-04 10:00").streak == 3)
            // Once per week: Sunday the 10th is the same ISO week as Monday the 4th.
            s.clock.set("2027-01-10 10:00", in: s.zone)
            let again = await expectRPCError(.alreadyExists) {
                try await s.harness.connection.habits.complete(options: s.options) { $0.habitID = weekly }
            }
            #expect(again?.details?.reason == "HABIT_ALREADY_COMPLETED" && again?.details?.fields["completion_date"] == "2027-01-04")
            #expect(try await s.streak(weekly, at: "2027-01-17 23:59") == 3)
            // Monday morning, last week can still be done for yesterday.
            #expect(try await s.streak(weekly, at: "2027-01-18 11:00") == 3)
            #expect(try await s.streak(weekly, at: "2027-01-18 12:00") == 0)

            let monthly = try await s.habit("monthly", at: "2028-01-31 10:00")
            _ = try await s.complete(monthly, at: "2028-01-31 10:00")
            _ = try await s.complete(monthly, at: "2028-02-29 10:00")
            #expect(try await s.complete(monthly, at: "2028-03-31 10:00").streak == 3)
            #expect(try await s.streak(monthly, at: "2028-04-30 23:00") == 3)
            #expect(try await s.streak(monthly, at: "2028-05-01 12:00") == 0)

            let daily = try await s.habit(at: "2028-02-28 10:00")
            _ = try await s.complete(daily, at: "2028-02-28 10:00")
            _ = try await s.complete(daily, at: "2028-02-29 10:00")
            #expect(try await s.complete(daily, at: "2028-03-01 10:00").streak == 3)
        }
    }

    @Test("pausing freezes a streak; resuming continues it; the recalculation job agrees and repairs")
    func pause() async throws {
        try await StreakScenario.with(zone: "Europe/Paris") { s in
            let habit = try await s.habit(at: "2026-11-01 09:00")
            for day in 1...3 { _ = try await s.complete(habit, at: "2026-11-0\(day) 09:00") }
            s.clock.set("2026-11-03 20:00", in: s.zone)
            let paused = try await s.harness.connection.habits.pause(options: s.options) { $0.habitID = habit }
            #expect(paused.paused && paused.streak == 3)
            // Paused for a week: frozen, and it cannot be completed.
            #expect(try await s.streak(habit, at: "2026-11-10 09:00") == 3)
            let refused = await expectRPCError(.failedPrecondition) {
                try await s.harness.connection.habits.complete(options: s.options) { $0.habitID = habit }
            }
            #expect(refused?.details?.reason == "HABIT_PAUSED")
            let resumed = try await s.harness.connection.habits.resume(options: s.options) { $0.habitID = habit }
            #expect(!resumed.paused && resumed.streak == 3)
            #expect(try await s.complete(habit, at: "2026-11-10 18:00").streak == 4)
            // The job recounts from completions and pauses: nothing to repair.
            let admin = ServiceHarness.service("admin")
            #expect(try await s.harness.connection.maintenance.run(options: admin) { $0.job = "streaks" }.affected == 0)
            // A count that disagrees with the completions is repaired; a streak is never broken by the job.
            _ = try await s.harness.query("UPDATE habits SET streak_days = 40 WHERE id = \(UUID(uuidString: habit))")
            #expect(try await s.harness.connection.maintenance.run(options: admin) { $0.job = "streaks" }.affected == 1)
            #expect(try await s.streak(habit, at: "2026-11-11 09:00") == 4)
            // Two weeks later the read shows 0, and the job still leaves the stored streak as it was.
            #expect(try await s.streak(habit, at: "2026-11-25 09:00") == 0)
            #expect(try await s.harness.connection.maintenance.run(options: admin) { $0.job = "streaks" }.affected == 0)
            #expect(try await s.harness.count("SELECT streak_days AS n FROM habits WHERE id = \(UUID(uuidString: habit))") == 4)
        }
    }

    @Test("a pause after a missed day does not revive the streak")
    func pauseAfterMiss() async throws {
        try await StreakScenario.with(zone: "UTC") { s in
            let habit = try await s.habit(at: "2026-11-01 09:00")
            _ = try await s.complete(habit, at: "2026-11-01 09:00")
            _ = try await s.complete(habit, at: "2026-11-02 09:00")
            // After noon on the 4th the 3rd is missed for good.
            s.clock.set("2026-11-04 13:00", in: s.zone)
            let paused = try await s.harness.connection.habits.pause(options: s.options) { $0.habitID = habit }
            #expect(paused.streak == 0)
            s.clock.set("2026-11-08 09:00", in: s.zone)
            _ = try await s.harness.connection.habits.resume(options: s.options) { $0.habitID = habit }
            #expect(try await s.complete(habit, at: "2026-11-08 10:00").streak == 1)
        }
    }
}
