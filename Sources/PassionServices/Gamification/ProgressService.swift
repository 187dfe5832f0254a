import Foundation
import PassionServerAPI
import PassionIdentity
import PassionJSON
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Progress`: progress reads for users, rewards for internal services. Every reward
/// is one call of `passion_reward` (one round trip; see 0007_gamification_engine.sql).
public struct ProgressService: PassionAPI.Progress.ServiceProtocol {
    let store: GamificationStore
    /// Ledger history, which may lag (a hot standby when one is configured).
    let history: GamificationStore
    let trail: AuditTrail
    let hub: ProgressEventHub
    let leaderboards: LeaderboardCache
    /// The instant streaks are read at (the content clock, which tests move).
    let now: @Sendable () -> Date

    public init(
        pool: PostgresPool, reads: PostgresPool? = nil, trail: AuditTrail, hub: ProgressEventHub, leaderboards: LeaderboardCache,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.store = GamificationStore(pool: pool)
        self.history = GamificationStore(pool: reads ?? pool)
        self.trail = trail
        self.hub = hub
        self.leaderboards = leaderboards
        self.now = now
    }

    static let xpReasons = Vocabulary.xpReasons
    static let coinReasons = Vocabulary.coinReasons
    static let resourceTypes = Vocabulary.rewardResourceTypes

    // MARK: - Reads

    public func getProgress(request: GetProgressRequest, context: ServerContext) async throws -> ProgressSummary {
        let userID = try context.actingUser()
        guard let standing = try await store.standing(of: userID, now: now(), deadline: context.deadline) else { throw UsersService.notFound }
        var summary = Self.summary(standing.progress)
        summary.activeStreaks = standing.activeStreaks
        summary.allTimeRank = try leaderboards.allTimeRank(of: userID, xp: standing.progress.totalXP)
        return summary
    }

    public func listPointsLedger(request: ListLedgerRequest, context: ServerContext) async throws -> ListPointsLedgerResponse {
        let userID = try context.actingUser()
        let size = try Validate.pageSize(request.pageSize, default: 50, maximum: 500)
        let before = try Self.cursor(request.pageToken)
        let rows = try await history.pointsLedger(of: userID, before: before, limit: size + 1, deadline: context.deadline)
        var response = ListPointsLedgerResponse()
        response.entries = rows.prefix(size).map { row in
            var entry = PointsLedgerEntry()
            entry.id = row.id
            entry.points = row.points
            entry.reason = row.reason
            entry.resourceType = row.resourceType ?? ""
            entry.resourceID = row.resourceID?.postgresText ?? ""
            entry.idempotencyKey = row.idempotencyKey ?? ""
            entry.createdAt = Google_Protobuf_Timestamp(row.createdAt)
            return entry
        }
        if rows.count > size, let last = response.entries.last { response.nextPageToken = PageToken.encode([String(last.id)]) }
        return response
    }

    public func listCoinsLedger(request: ListLedgerRequest, context: ServerContext) async throws -> ListCoinsLedgerResponse {
        let userID = try context.actingUser()
        let size = try Validate.pageSize(request.pageSize, default: 50, maximum: 500)
        let before = try Self.cursor(request.pageToken)
        let rows = try await history.coinsLedger(of: userID, before: before, limit: size + 1, deadline: context.deadline)
        var response = ListCoinsLedgerResponse()
        response.entries = rows.prefix(size).map { row in
            var entry = CoinsLedgerEntry()
            entry.id = row.id
            entry.coins = row.coins
            entry.transactionType = row.transactionType
            entry.reason = row.reason
            entry.resourceID = row.resourceID?.postgresText ?? ""
            entry.idempotencyKey = row.idempotencyKey ?? ""
            entry.refundOf = row.refundOf ?? 0
            entry.createdAt = Google_Protobuf_Timestamp(row.createdAt)
            return entry
        }
        if rows.count > size, let last = response.entries.last { response.nextPageToken = PageToken.encode([String(last.id)]) }
        return response
    }

    static func cursor(_ token: String) throws -> Int64? {
        try PageToken.decode(token, count: 1).map { parts in
            guard let id = Int64(parts[0]) else { throw Validate.invalid("page_token", "is not a token from a previous response") }
            return id
        }
    }

    // MARK: - Subscribe

    /// How long events are kept for resuming.
    static let resumeWindow = "24 hours"

    public func subscribe(
        request: SubscribeRequest, context: ServerContext, responses: RPCWriter<SubscribeResponse>
    ) async throws {
        let target: String?
        if context.principal.kind == .user {
            guard request.userID.isEmpty, !request.allUsers else {
                throw Validate.invalid("user_id", "users follow their own events: leave user_id and all_users empty")
            }
            target = try context.actingUser().postgresText
        } else if request.allUsers {
            guard request.userID.isEmpty else { throw Validate.invalid("all_users", "give user_id or all_users, not both") }
            target = nil
        } else if !request.userID.isEmpty {
            target = try Validate.uuid(request.userID, field: "user_id").postgresText
        } else if let acting = context.principal.actingForUser {
            target = acting
        } else {
            throw Validate.invalid("user_id", "name the user to follow, or set all_users")
        }
        guard (0...300).contains(request.heartbeatSeconds) else { throw Validate.invalid("heartbeat_seconds", "must be 0–300") }
        let heartbeat = Duration.seconds(request.heartbeatSeconds == 0 ? 15 : Int(request.heartbeatSeconds))

        // Registered before reading the table: nothing committed from here on can be missed.
        let (id, signals, continuation) = hub.subscribe(userID: target)
        defer { hub.unsubscribe(id) }
        let beats = Task {
            while !Task.isCancelled {
                try await Task.sleep(for: heartbeat)
                continuation.yield(.heartbeat(newestDelivered: hub.newestDelivered))
            }
        }
        defer { beats.cancel() }
        // A server shutting down ends the stream now, with the id to resume from, rather than
        // holding the shutdown for its whole grace period.
        let shutdown = Task {
            await context.shutdownRequested()
            if !Task.isCancelled { continuation.finish() }
        }
        defer { shutdown.cancel() }

        // Starting live: the resume point is the newest event this stream is owed nothing
        // before (the user's own newest; for all users, the newest of all).
        var last = request.afterEventID == 0 ? try await newestEventID(of: target, deadline: context.deadline) : request.afterEventID
        // Ids already sent, for events of several users, which can commit out of id order.
        var sent = Set<Int64>()
        if request.afterEventID > 0 {
            try await checkResumable(after: last, deadline: context.deadline)
            last = try await catchUp(target, after: last, sent: &sent, responses: responses)
        }
        // A heartbeat at once tells the client the stream is live: caught up, and nothing
        // committed from now on can be missed.
        try await responses.write(SubscribeResponse.with { $0.heartbeat = Heartbeat.with { $0.lastEventID = last } })
        for await signal in signals {
            switch signal {
            case .event(let event):
                guard !sent.contains(event.id), target == nil || event.id > last else { continue }
                try await responses.write(SubscribeResponse.with { $0.event = event })
                last = max(last, event.id)
                if target == nil { sent.insert(event.id) }
                if sent.count > 100_000 { sent.removeAll() }
            case .catchUp:
                last = try await catchUp(target, after: last, sent: &sent, responses: responses)
            case .heartbeat(let newestDelivered):
                // A user's stream may resume after the instance's newest event too: every event
                // of the user up to it was queued before this beat.
                let resumeAfter = target == nil ? last : max(last, newestDelivered)
                try await responses.write(SubscribeResponse.with { $0.heartbeat = Heartbeat.with { $0.lastEventID = resumeAfter } })
            }
        }
        try Task.checkCancellation()
        throw RPCError(
            code: .unavailable, message: "the event stream ended (server stopping, or the client read too slowly); resume after the last event id",
            details: ErrorDetails(reason: "RESUBSCRIBE", fields: ["last-event-id": "\(last)"]))
    }

    private func newestEventID(of target: String?, deadline: ContinuousClock.Instant?) async throws -> Int64 {
        try await store.newestEventID(of: target.flatMap { try? UUID(postgresText: $0) }, deadline: deadline)
    }

    private func checkResumable(after id: Int64, deadline: ContinuousClock.Instant?) async throws {
        let (kept, newest) = try await store.resumePoint(id, window: Self.resumeWindow, deadline: deadline)
        // An id from the future (a database restored from a backup, or another deployment's)
        // would filter out every event until the ids caught up: refused, naming where to resume.
        guard id <= newest else {
            throw RPCError(
                code: .outOfRange, message: "event \(id) does not exist yet (the newest is \(newest)); resume after \(newest)",
                details: ErrorDetails(reason: "RESUME_AHEAD", fields: ["field": "after_event_id", "newest-event-id": "\(newest)"]))
        }
        guard kept || id == newest else {
            throw RPCError(
                code: .outOfRange, message: "events after \(id) are no longer kept; read GetProgress and subscribe from 0",
                details: ErrorDetails(reason: "RESUME_TOO_OLD", fields: ["field": "after_event_id"]))
        }
    }

    /// Sends the stored events after `after`, oldest first; returns the last id sent.
    private func catchUp(
        _ target: String?, after: Int64, sent: inout Set<Int64>, responses: RPCWriter<SubscribeResponse>
    ) async throws -> Int64 {
        var last = after
        while true {
            let from = last
            let user = target.flatMap { (try? UUID(postgresText: $0)) }
            let records = try await store.events(after: from, of: user, limit: 500)
            for record in records {
                let event = Self.event(record)
                guard !sent.contains(event.id) else { continue }
                try await responses.write(SubscribeResponse.with { $0.event = event })
                last = max(last, event.id)
                if target == nil { sent.insert(event.id) }
            }
            if records.count < 500 { return last }
        }
    }

    // MARK: - Rewards

    /// A validated reward, as passion_reward takes it.
    struct Reward: Sendable {
        var user: UUID
        var kind: String
        var amount: Int32
        var reason: String
        var resourceType: String?
        var resourceID: UUID?
        var key: String
        var refundOf: Int64?
    }

    public func awardXP(request: AwardXPRequest, context: ServerContext) async throws -> RewardResult {
        let origin = AuditOrigin(context)
        return try await trail.failures(origin, action: "xp.awarded", resourceType: "points_ledger") {
            let reward = try Self.xpReward(
                userID: request.userID, amount: request.points, reason: request.reason, resourceType: request.resourceType,
                resourceID: request.resourceID, key: request.idempotencyKey, amountField: "points")
            return try await apply(reward, origin: origin, deadline: context.deadline)
        }
    }

    public func awardCoins(request: AwardCoinsRequest, context: ServerContext) async throws -> RewardResult {
        let origin = AuditOrigin(context)
        return try await trail.failures(origin, action: "coins.awarded", resourceType: "coins_ledger") {
            let reward = try Self.coinReward(
                userID: request.userID, amount: request.coins, reason: request.reason, resourceID: request.resourceID,
                key: request.idempotencyKey, amountField: "coins")
            return try await apply(reward, origin: origin, deadline: context.deadline)
        }
    }

    /// An XP award, validated; `prefix` names a batch item's fields (`awards[3].`).
    static func xpReward(
        userID: String, amount: Int32, reason: String, resourceType: String, resourceID: String, key: String,
        amountField: String, prefix: String = ""
    ) throws -> Reward {
        guard xpReasons.contains(reason) else {
            throw Validate.invalid(prefix + "reason", "must be one of \(xpReasons.sorted().joined(separator: ", "))")
        }
        guard amount != 0 else { throw Validate.invalid(prefix + amountField, "must not be 0") }
        guard amount > 0 || ["penalty", "correction"].contains(reason) else {
            throw Validate.invalid(prefix + amountField, "may be negative only with reason penalty or correction")
        }
        guard reason != "penalty" || amount < 0 else { throw Validate.invalid(prefix + amountField, "a penalty is negative") }
        let (type, id) = try resource(type: resourceType, id: resourceID, prefix: prefix)
        return Reward(
            user: try Validate.uuid(userID, field: prefix + "user_id"), kind: "xp", amount: amount, reason: reason,
            resourceType: type, resourceID: id, key: try Self.key(key, field: prefix + "idempotency_key"))
    }

    /// A coin award, validated; `prefix` names a batch item's fields.
    static func coinReward(
        userID: String, amount: Int32, reason: String, resourceID: String, key: String, amountField: String, prefix: String = ""
    ) throws -> Reward {
        guard coinReasons.contains(reason) else {
            throw Validate.invalid(prefix + "reason", "must be one of \(coinReasons.sorted().joined(separator: ", "))")
        }
        guard amount != 0 else { throw Validate.invalid(prefix + amountField, "must not be 0") }
        guard amount > 0 || reason == "correction" else {
            throw Validate.invalid(prefix + amountField, "may be negative only with reason correction")
        }
        let id = try resourceID.isEmpty ? nil : Validate.uuid(resourceID, field: prefix + "resource_id")
        return Reward(
            user: try Validate.uuid(userID, field: prefix + "user_id"), kind: "coins", amount: amount, reason: reason,
            resourceID: id, key: try Self.key(key, field: prefix + "idempotency_key"))
    }

    public func spendCoins(request: SpendCoinsRequest, context: ServerContext) async throws -> RewardResult {
        let origin = AuditOrigin(context)
        return try await trail.failures(origin, action: "coins.spent", resourceType: "coins_ledger") {
            guard request.price > 0 else { throw Validate.invalid("price", "must be positive") }
            let resourceID = try request.resourceID.isEmpty ? nil : Validate.uuid(request.resourceID, field: "resource_id")
            let reward = Reward(
                user: try Validate.uuid(request.userID, field: "user_id"), kind: "spend", amount: request.price,
                reason: "shop_purchase", resourceID: resourceID, key: try Self.key(request.idempotencyKey))
            return try await apply(reward, origin: origin, deadline: context.deadline)
        }
    }

    public func refundCoins(request: RefundCoinsRequest, context: ServerContext) async throws -> RewardResult {
        let origin = AuditOrigin(context)
        return try await trail.failures(origin, action: "coins.refunded", resourceType: "coins_ledger") {
            guard request.refundOf > 0 else { throw Validate.invalid("refund_of", "must be the ledger id of a spend") }
            guard request.coins >= 0 else { throw Validate.invalid("coins", "must not be negative") }
            let user = try Validate.uuid(request.userID, field: "user_id")
            let reward = Reward(
                user: user, kind: "refund", amount: request.coins, reason: "shop_purchase", key: try Self.key(request.idempotencyKey),
                refundOf: request.refundOf)
            return try await apply(reward, origin: origin, deadline: context.deadline)
        }
    }

    public func awardBatch(request: AwardBatchRequest, context: ServerContext) async throws -> AwardBatchResponse {
        guard (1...1000).contains(request.awards.count) else { throw Validate.invalid("awards", "must hold 1–1000 awards") }
        let origin = AuditOrigin(context)
        // Items that fail validation get their error here and never reach the database.
        var results = [BatchAwardResult?](repeating: nil, count: request.awards.count)
        var items: [Reward] = []
        var positions: [Int] = []
        for (index, award) in request.awards.enumerated() {
            do {
                items.append(try Self.reward(award, field: "awards[\(index)]"))
                positions.append(index)
            } catch {
                results[index] = BatchAwardResult.with { $0.error = Self.itemError(RPCError(converting: error)) }
            }
        }
        if !items.isEmpty {
            let outcomes = try await store.rewardBatch(items, origin: origin, deadline: context.deadline)
            for (position, outcome) in zip(positions, outcomes) {
                switch outcome {
                case .failed(let error): results[position] = BatchAwardResult.with { $0.error = Self.itemError(error.rpcError) }
                case .rewarded(let reward): results[position] = BatchAwardResult.with { $0.result = Self.result(reward) }
                }
            }
        }
        return AwardBatchResponse.with { $0.results = results.map { $0 ?? BatchAwardResult() } }
    }

    /// A batch item, validated like the single calls.
    static func reward(_ award: BatchAward, field: String) throws -> Reward {
        let prefix = field + "."
        switch award.kind {
        case .xp:
            return try xpReward(
                userID: award.userID, amount: award.amount, reason: award.reason, resourceType: award.resourceType,
                resourceID: award.resourceID, key: award.idempotencyKey, amountField: "amount", prefix: prefix)
        case .coins:
            return try coinReward(
                userID: award.userID, amount: award.amount, reason: award.reason, resourceID: award.resourceID,
                key: award.idempotencyKey, amountField: "amount", prefix: prefix)
        default:
            throw Validate.invalid(prefix + "kind", "must be XP or COINS")
        }
    }

    static func itemError(_ error: RPCError) -> ItemError {
        ItemError.with {
            $0.code = Int32(error.code.rawValue)
            $0.message = error.message
            $0.reason = error.details?.reason ?? ""
            $0.fields = error.details?.fields ?? [:]
        }
    }

    public func leaderboard(request: LeaderboardRequest, context: ServerContext) async throws -> LeaderboardResponse {
        let userID = try context.actingUser()
        guard (0...100).contains(request.limit) else { throw Validate.invalid("limit", "must be 0–100") }
        guard (0...10).contains(request.neighbours) else { throw Validate.invalid("neighbours", "must be 0–10") }
        let period = try Self.period(request, today: Date())
        let standings = try await leaderboards.standings(
            period, caller: userID, limit: request.limit == 0 ? 10 : Int(request.limit),
            neighbours: request.neighbours == 0 ? 2 : Int(request.neighbours), deadline: context.deadline)
        func entry(_ standing: Standings.Entry) -> LeaderboardEntry {
            LeaderboardEntry.with {
                $0.rank = standing.rank
                $0.userID = standing.user.postgresText
                $0.displayName = standings.names[standing.user] ?? ""
                $0.xp = standing.xp
            }
        }
        return LeaderboardResponse.with {
            $0.top = standings.top.map(entry)
            $0.me = entry(standings.me)
            $0.aroundMe = standings.aroundMe.map(entry)
            $0.rankedUsers = standings.rankedUsers
        }
    }

    /// Weeks before this one that Leaderboard ranks.
    static let pastWeeks = 52

    static func period(_ request: LeaderboardRequest, today: Date) throws -> LeaderboardPeriod {
        let thisWeek = LocalDate.weekStart(of: today)
        switch request.period {
        case .allTime:
            guard request.weekStart.isEmpty else { throw Validate.invalid("week_start", "is only for the WEEK period") }
            return .allTime
        case .week:
            guard let monday = try Validate.date(request.weekStart, field: "week_start") else { return .week(thisWeek) }
            guard monday.weekday == 0 else { throw Validate.invalid("week_start", "must be a Monday") }
            guard monday <= thisWeek else { throw Validate.invalid("week_start", "is in the future") }
            guard thisWeek.daysSinceEpoch - monday.daysSinceEpoch <= 7 * pastWeeks else {
                throw Validate.invalid("week_start", "must be within the \(pastWeeks) weeks before this one")
            }
            return .week(monday)
        case .UNRECOGNIZED:
            throw Validate.invalid("period", "must be ALL_TIME or WEEK")
        }
    }

    func apply(_ reward: Reward, origin: AuditOrigin, deadline: ContinuousClock.Instant?) async throws -> RewardResult {
        Self.result(try await store.reward(reward, origin: origin, deadline: deadline))
    }

    static func key(_ key: String, field: String = "idempotency_key") throws -> String {
        guard !key.isEmpty else { throw Validate.invalid(field, "is required: retries with it are answered, not repeated") }
        guard key.utf8.count <= 200, key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw Validate.invalid(field, "must be 1–200 printable ASCII characters without spaces")
        }
        guard !key.hasPrefix(serverKeyPrefix) else {
            throw Validate.invalid(field, "must not begin with \"\(serverKeyPrefix)\": keys the server derives begin so")
        }
        return key
    }

    /// What every key the server derives begins with (content rewards, achievement rewards, stored
    /// results; 0012_reward_integrity.sql), so that no caller's key can collide with one.
    static let serverKeyPrefix = "$"

    static func resource(type: String, id: String, prefix: String = "") throws -> (String?, UUID?) {
        if type.isEmpty, id.isEmpty { return (nil, nil) }
        guard resourceTypes.contains(type) else {
            throw Validate.invalid(prefix + "resource_type", "must be one of \(resourceTypes.sorted().joined(separator: ", ")) with resource_id")
        }
        return (type, try Validate.uuid(id, field: prefix + "resource_id"))
    }

    // MARK: - Records to messages

    static func summary(_ record: ProgressRecord) -> ProgressSummary {
        var summary = ProgressSummary()
        summary.userID = record.userID.postgresText
        summary.totalXp = record.totalXP
        summary.level = record.level
        summary.xpIntoLevel = record.totalXP - record.levelFloorXP
        summary.xpToNextLevel = record.nextLevelXP - record.totalXP
        summary.totalCoins = record.totalCoins
        summary.coinsEarned = record.coinsEarned
        summary.achievementsUnlocked = record.achievementsUnlocked
        return summary
    }

    static func result(_ record: RewardRecord) -> RewardResult {
        var result = RewardResult()
        result.progress = record.progress.map(summary) ?? ProgressSummary()
        result.ledgerID = record.ledgerID ?? 0
        result.replayed = record.replayed
        result.events = record.events.map(event)
        return result
    }

    static let eventTypes: [String: ProgressEventType] = [
        "xp_awarded": .xpAwarded, "coins_awarded": .coinsAwarded, "coins_spent": .coinsSpent, "coins_refunded": .coinsRefunded,
        "level_up": .levelUp, "level_down": .levelDown, "achievement_unlocked": .achievementUnlocked,
    ]

    static func event(_ record: EventRecord) -> ProgressEvent {
        var event = ProgressEvent()
        event.id = record.id
        event.userID = record.userID.postgresText
        event.type = eventTypes[record.type] ?? .unspecified
        event.createdAt = Google_Protobuf_Timestamp(record.createdAt)
        let payload = record.payload
        event.ledgerID = payload.ledgerID ?? 0
        event.amount = payload.amount ?? 0
        event.reason = payload.reason ?? ""
        event.fromLevel = payload.fromLevel ?? 0
        event.toLevel = payload.toLevel ?? 0
        if event.type == .achievementUnlocked {
            event.achievement = UnlockedAchievement.with {
                $0.achievementID = payload.achievementID?.postgresText ?? ""
                $0.slug = payload.slug ?? ""
                $0.title = payload.title ?? ""
                $0.rarity = payload.rarity ?? ""
                $0.xpReward = payload.xpReward ?? 0
                $0.coinsReward = payload.coinsReward ?? 0
            }
        }
        return event
    }
}
