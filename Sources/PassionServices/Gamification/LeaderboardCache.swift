import CoreMetrics
import Foundation
import Logging
import PassionMetrics
import PassionRPCServer
import PassionStore
import ServiceLifecycle
import Synchronization

/// A leaderboard's period: everything, or one UTC week by its Monday.
enum LeaderboardPeriod: Hashable, Sendable, CustomStringConvertible {
    case allTime
    case week(LocalDate)

    var description: String {
        switch self {
        case .allTime: "all-time"
        case .week(let monday): "week of \(monday)"
        }
    }
}

/// Every leaderboard this instance serves, held in memory as `RankedScores` so a rank costs
/// O(log users) whatever the number of users; PostgreSQL stays the truth.
///
/// The all-time board is loaded at start and each week's board on first use (at most
/// `weeksKept`, least recently used dropped). The ledger's trigger NOTIFYs `passion_scores`
/// with the ids of users whose XP changed on any instance (an account deletion too); one loop
/// re-reads those users' totals and applies them, so the boards follow the database within a
/// notification's delivery and one batched read. The listener starts before any load, so a
/// change made during a load is re-read after it. A lost listener connection reloads every
/// board (notifications may have been missed); until the first load ends, ranks are UNAVAILABLE.
public final class LeaderboardCache: Service, Sendable {
    public static let channel = "passion_scores"
    static let settlePrefix = "settle:"

    private let store: LeaderboardStore
    private let listener: NotificationListener
    private let weeksKept: Int
    private let logger: Logger
    private let state = Mutex(State())
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    private let metrics: LeaderboardMetrics

    private struct State {
        var boards: [LeaderboardPeriod: RankedScores] = [:]
        /// Use order of the week boards, for dropping the least recently used.
        var lastUse: [LocalDate: UInt64] = [:]
        var tick: UInt64 = 0
        var listening = false
        var reloadEverything = true
        var dirty: Set<UUID> = []
        var refreshWaiters: [CheckedContinuation<Void, any Error>] = []
        var loadWaiters: [LocalDate: [CheckedContinuation<Void, any Error>]] = [:]
        var settling: [String: CheckedContinuation<Void, any Error>] = [:]
        var readyWaiters: [CheckedContinuation<Void, Never>] = []
        var stopped = false

        mutating func use(_ monday: LocalDate) {
            tick += 1
            lastUse[monday] = tick
        }
    }

    /// `reads`, a pool on a hot standby, serves the board loads once it has replayed what the
    /// primary had written when the load began; the re-reads after notifications stay on `pool`.
    public init(
        pool: PostgresPool, reads: PostgresPool? = nil, weeksKept: Int = 14, metrics: any MetricsFactory = NOOPMetricsHandler.instance,
        logger: Logger
    ) throws {
        self.store = LeaderboardStore(pool: pool, reads: reads)
        self.listener = try NotificationListener(conninfo: pool.configuration.conninfo, channels: [Self.channel], logger: logger)
        self.weeksKept = max(1, weeksKept)
        self.logger = logger
        self.metrics = LeaderboardMetrics(factory: metrics)
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Whether the all-time board is loaded (what `/ready` reports).
    public var isReady: Bool { state.withLock { $0.boards[.allTime] != nil } }

    /// Returns once the all-time board is loaded.
    public func waitUntilReady() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state in
                if state.boards[.allTime] != nil || state.stopped { return true }
                state.readyWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Sets the ranked-users gauges; called when metrics are scraped.
    public func publishGauges() {
        let (allTime, weeks) = state.withLock { state in
            (state.boards[.allTime]?.count ?? 0, state.boards.count - (state.boards[.allTime] == nil ? 0 : 1))
        }
        metrics.allTimeUsers.record(allTime)
        metrics.weekBoards.record(weeks)
    }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { try? await self.listener.run() }
            group.addTask { await self.work() }
            for await event in listener.events {
                switch event {
                case .listening:
                    state.withLock { $0.listening = true }
                case .reconnected:
                    metrics.reloads.increment()
                    state.withLock { state in
                        state.reloadEverything = true
                        // Their NOTIFY may have been lost; the reload reads everything committed before it.
                        state.refreshWaiters.append(contentsOf: state.settling.values)
                        state.settling.removeAll()
                    }
                case .notification(_, let payload):
                    received(payload)
                }
                wake.yield()
            }
            stop()
        }
    }

    // MARK: - Reads

    /// `user`'s all-time rank with `xp`, their total as the caller just read it: one more than
    /// the users above it (equal XP, equal rank; 0 XP after everyone). The board's own entry for
    /// the user may lag `xp` and is not counted. UNAVAILABLE while the board loads.
    func allTimeRank(of user: UUID, xp: Int64) throws -> Int64 {
        try state.withLock { state in
            guard let board = state.boards[.allTime] else { throw Self.loading }
            // The board counts the user's own entry among those above when it holds more.
            let ownAbove = board.score(of: RankedScores.UserKey(user)).map { $0 > xp } ?? false
            return Int64(board.rank(ofScore: xp) - (ownAbove ? 1 : 0))
        }
    }

    /// One leaderboard read: the top `limit`, the `neighbours` either side of `caller` (an
    /// unranked caller stands just after the last ranked user) and the caller, each with rank,
    /// XP and display name. The names and the caller's own total come in one round trip; when
    /// the board has not yet applied the caller's latest change, the caller is re-read into it
    /// and the read repeated, so callers always see their own awards.
    func standings(
        _ period: LeaderboardPeriod, caller: UUID, limit: Int, neighbours: Int, deadline: ContinuousClock.Instant? = nil
    ) async throws -> Standings {
        // Until the first load ends, every board refuses at once rather than wait it out.
        guard isReady else { throw Self.loading }
        if case .week(let monday) = period { try await ensureLoaded(monday) }
        var standings = try view(period, caller: caller, limit: limit, neighbours: neighbours)
        let read = try await store.names(of: standings.users, caller: caller, period: period, deadline: deadline)
        var names = read.names
        if read.callerXP != standings.me.xp {
            try await refresh([caller])
            standings = try view(period, caller: caller, limit: limit, neighbours: neighbours)
            let missing = standings.users.filter { names[$0] == nil }
            if !missing.isEmpty {
                let more = try await store.names(of: missing, caller: caller, period: period, deadline: deadline)
                names.merge(more.names) { first, _ in first }
            }
        }
        standings.names = names
        return standings
    }

    private func view(_ period: LeaderboardPeriod, caller: UUID, limit: Int, neighbours: Int) throws -> Standings {
        try state.withLock { state in
            guard let board = state.boards[period] else { throw Self.loading }
            if case .week(let monday) = period { state.use(monday) }
            let key = RankedScores.UserKey(caller)
            let position = board.position(of: key) ?? board.count
            func ranked(_ entries: [RankedScores.Entry]) -> [Standings.Entry] {
                entries.map { Standings.Entry(user: $0.user.uuid, xp: $0.score, rank: Int64(board.rank(ofScore: $0.score))) }
            }
            let around = ranked(board.entries(max(0, position - neighbours)..<(position + neighbours + 1)))
            let xp = board.score(of: key) ?? 0
            let me = Standings.Entry(user: caller, xp: xp, rank: Int64(board.rank(ofScore: xp)))
            return Standings(
                top: ranked(board.entries(0..<limit)), me: me,
                // An unranked caller is not on the board: they come after its last users.
                aroundMe: xp > 0 ? around : around + [me], rankedUsers: Int64(board.count))
        }
    }

    /// Returns once every change committed on any instance before the call is applied here.
    /// A NOTIFY of its own goes down the same channel; notifications arrive in commit order, so
    /// when it arrives, every change before it has been received.
    public func settle() async throws {
        let token = UUID().uuidString
        try await withCheckedThrowingContinuation { continuation in
            state.withLock { $0.settling[token] = continuation }
            Task {
                do {
                    try await store.notify(Self.channel, Self.settlePrefix + token)
                } catch {
                    state.withLock { $0.settling.removeValue(forKey: token) }?.resume(throwing: error)
                }
            }
        }
    }

    /// Re-reads `users`' totals and returns once they are applied.
    func refresh(_ users: [UUID]) async throws {
        try await withCheckedThrowingContinuation { continuation in
            let stopped = state.withLock { state in
                guard !state.stopped else { return true }
                state.dirty.formUnion(users)
                state.refreshWaiters.append(continuation)
                return false
            }
            if stopped { continuation.resume(throwing: Self.loading) } else { wake.yield() }
        }
    }

    private func ensureLoaded(_ monday: LocalDate) async throws {
        guard state.withLock({ $0.boards[.week(monday)] == nil }) else { return }
        try await withCheckedThrowingContinuation { continuation in
            let stopped = state.withLock { state in
                guard !state.stopped else { return true }
                state.loadWaiters[monday, default: []].append(continuation)
                return false
            }
            if stopped { continuation.resume(throwing: Self.loading) } else { wake.yield() }
        }
    }

    private func received(_ payload: String) {
        if payload.hasPrefix(Self.settlePrefix) {
            let token = String(payload.dropFirst(Self.settlePrefix.count))
            // Not this instance's: another instance is settling.
            state.withLock { state in
                if let waiter = state.settling.removeValue(forKey: token) { state.refreshWaiters.append(waiter) }
            }
            return
        }
        let users = payload.split(separator: ",").compactMap { try? UUID(postgresText: String($0)) }
        metrics.notifiedUsers.increment(by: users.count)
        state.withLock { $0.dirty.formUnion(users) }
    }

    // MARK: - The loop

    /// The one writer of the boards: loads, then re-reads what changed, until stopped.
    private func work() async {
        for await _ in wakeups {
            while !Task.isCancelled {
                do {
                    guard try await step() else { break }
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("leaderboards could not read the database; retrying", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
    }

    /// One unit of work; false when there was none.
    private func step() async throws -> Bool {
        enum Work {
            case reload([LeaderboardPeriod])
            case load(LocalDate)
            case refresh([UUID], [LocalDate], [CheckedContinuation<Void, any Error>])
        }
        let work: Work? = state.withLock { state in
            guard state.listening else { return nil }
            if state.reloadEverything {
                state.reloadEverything = false
                state.dirty.removeAll()
                return .reload([.allTime] + state.boards.keys.filter { $0 != .allTime })
            }
            if let monday = state.loadWaiters.keys.first { return .load(monday) }
            guard !state.dirty.isEmpty || !state.refreshWaiters.isEmpty else { return nil }
            let users = Array(state.dirty)
            state.dirty.removeAll()
            let waiters = state.refreshWaiters
            state.refreshWaiters.removeAll()
            let weeks = state.boards.keys.compactMap { period -> LocalDate? in
                if case .week(let monday) = period { return monday }
                return nil
            }
            return .refresh(users, weeks, waiters)
        }
        switch work {
        case nil:
            return false
        case .reload(let periods):
            do {
                for period in periods { try await load(period) }
            } catch {
                state.withLock { $0.reloadEverything = true }
                throw error
            }
        case .load(let monday):
            do {
                try await load(.week(monday))
                let waiters = state.withLock { $0.loadWaiters.removeValue(forKey: monday) ?? [] }
                for waiter in waiters { waiter.resume() }
            } catch {
                let waiters = state.withLock { $0.loadWaiters.removeValue(forKey: monday) ?? [] }
                for waiter in waiters { waiter.resume(throwing: RPCError(converting: error)) }
                throw error
            }
        case .refresh(let users, let weeks, let waiters):
            do {
                try await apply(users, weeks: weeks)
                for waiter in waiters { waiter.resume() }
            } catch {
                // The users stay dirty; the waiting calls fail now rather than wait out a retry.
                state.withLock { $0.dirty.formUnion(users) }
                for waiter in waiters { waiter.resume(throwing: RPCError(converting: error)) }
                throw error
            }
        }
        return true
    }

    private func load(_ period: LeaderboardPeriod) async throws {
        let started = ContinuousClock.now
        let board = try await store.board(period)
        let elapsed = ContinuousClock.now - started
        metrics.loadDuration.record(elapsed)
        logger.info("leaderboard loaded", metadata: ["period": "\(period)", "users": "\(board.count)", "duration": "\(elapsed)"])
        let ready = state.withLock { state in
            state.boards[period] = board
            switch period {
            case .allTime:
                let waiters = state.readyWaiters
                state.readyWaiters.removeAll()
                return waiters
            case .week(let monday):
                state.use(monday)
                while state.lastUse.count > weeksKept, let oldest = state.lastUse.min(by: { $0.value < $1.value })?.key {
                    state.lastUse.removeValue(forKey: oldest)
                    state.boards.removeValue(forKey: .week(oldest))
                }
                return []
            }
        }
        for waiter in ready { waiter.resume() }
    }

    private func apply(_ users: [UUID], weeks: [LocalDate]) async throws {
        for start in stride(from: 0, to: users.count, by: LeaderboardStore.refreshBatch) {
            let batch = Array(users[start..<min(start + LeaderboardStore.refreshBatch, users.count)])
            let totals = try await store.totals(of: batch, weeks: weeks)
            metrics.refreshedUsers.increment(by: batch.count)
            state.withLock { state in
                for user in batch {
                    let key = RankedScores.UserKey(user)
                    let current = totals[user]
                    state.boards[.allTime]?.set(key, score: current?.allTime ?? 0)
                    for monday in weeks { state.boards[.week(monday)]?.set(key, score: current?.weeks[monday] ?? 0) }
                }
            }
        }
    }

    private func stop() {
        let (refresh, loads, settling, ready) = state.withLock { state in
            state.stopped = true
            defer {
                state.refreshWaiters.removeAll()
                state.loadWaiters.removeAll()
                state.settling.removeAll()
                state.readyWaiters.removeAll()
            }
            return (state.refreshWaiters, state.loadWaiters.values.flatMap { $0 }, Array(state.settling.values), state.readyWaiters)
        }
        wake.finish()
        for waiter in refresh + loads + settling { waiter.resume(throwing: Self.loading) }
        for waiter in ready { waiter.resume() }
    }

    static let loading = RPCError(
        code: .unavailable, message: "leaderboards are loading on this server instance; retry shortly",
        details: ErrorDetails(reason: "RANKS_LOADING"))
}

/// A leaderboard read, before display names.
struct Standings: Sendable {
    struct Entry: Sendable, Equatable {
        var user: UUID
        var xp: Int64
        var rank: Int64
    }

    var top: [Entry]
    var me: Entry
    var aroundMe: [Entry]
    var rankedUsers: Int64
    /// Display names of everyone shown (absent: unknown).
    var names: [UUID: String] = [:]

    /// Everyone shown, once each.
    var users: [UUID] {
        var seen = Set<UUID>()
        return ([me] + top + aroundMe).map(\.user).filter { seen.insert($0).inserted }
    }
}

private struct LeaderboardMetrics: Sendable {
    let allTimeUsers: Gauge
    let weekBoards: Gauge
    let loadDuration: CoreMetrics.Timer
    let notifiedUsers: Counter
    let refreshedUsers: Counter
    let reloads: Counter

    init(factory: any MetricsFactory) {
        allTimeUsers = Gauge(label: "passion_leaderboard_ranked_users", factory: factory)
        weekBoards = Gauge(label: "passion_leaderboard_week_boards", factory: factory)
        loadDuration = Timer(label: "passion_leaderboard_load_seconds", factory: factory)
        notifiedUsers = Counter(label: "passion_leaderboard_notified_users_total", factory: factory)
        refreshedUsers = Counter(label: "passion_leaderboard_refreshed_users_total", factory: factory)
        reloads = Counter(label: "passion_leaderboard_reloads_total", factory: factory)
    }
}
