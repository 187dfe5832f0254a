import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Quests`: time-boxed challenges. Content calls move their progress
/// (`passion_quests_advance`); Complete claims the reward once (`passion_quest_complete`).
public struct QuestsService: Quests.ServiceProtocol {
    let content: ContentContext

    init(content: ContentContext) {
        self.content = content
    }

    static let types = ["daily", "goal_completion", "habit_chain", "milestone"]
    static let statuses = ["abandoned", "active", "completed", "failed"]
    static let metrics = ["completions", "focus_minutes"]
    static let notFound = ContentValidate.notFound("quest", field: "quest_id")

    public func create(request: CreateQuestRequest, context: ServerContext) async throws -> Quest {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "quest.created", resourceType: "quest") {
            let user = try context.actingUser()
            let given = request.quest
            let title = try ContentValidate.title(given.title, field: "quest.title")
            let description = try ContentValidate.description(given.description_p, field: "quest.description")
            let type = try ContentValidate.oneOf(given.questType, Self.types, field: "quest.quest_type")
            let start = try Validate.date(given.startDate, field: "quest.start_date")
            guard let end = try Validate.date(given.endDate, field: "quest.end_date") else {
                throw Validate.invalid("quest.end_date", "is required")
            }
            if let start {
                guard start <= end else { throw Validate.invalid("quest.end_date", "is before start_date") }
                guard end.daysSinceEpoch - start.daysSinceEpoch <= 366 else {
                    throw Validate.invalid("quest.end_date", "is more than 366 days after start_date")
                }
            }
            // A quest a user makes for themselves pays nothing: otherwise a reward is a matter of
            // creating quests. Services (game servers) set rewards.
            let byUser = origin.principal.kind == .user
            guard (0...10_000).contains(given.xpReward) else { throw Validate.invalid("quest.xp_reward", "must be 1–10000, or 0 for 100") }
            if byUser, given.xpReward != 0 {
                throw Validate.invalid("quest.xp_reward", "only a service sets a quest's reward; a quest you make for yourself pays none")
            }
            let xpReward = byUser ? 0 : given.xpReward == 0 ? 100 : given.xpReward
            let criteria = try Self.criteria(type: type, given.criteria, target: given.target)
            let principal = origin.principal.kind == .service ? "service:\(origin.principal.id)" : "user"
            let draft = ContentStore.QuestDraft(
                title: title, description: description, type: type, start: start, end: end, xpReward: xpReward,
                criteria: QuestRecord.Criteria(habitID: criteria.habit, goalID: criteria.goal, metric: criteria.metric), target: given.target,
                createdBy: principal)
            switch try await content.store.createQuest(draft, user: user, now: content.now(), origin: origin, deadline: context.deadline) {
            case .created(let id): return try await fetch(id, user: user, deadline: context.deadline)
            case .userNotFound: throw UsersService.notFound
            case .endInPast(let today): throw Validate.invalid("quest.end_date", "is in the past (today is \(today))")
            case .endBeforeStart(let from): throw Validate.invalid("quest.end_date", "is before start_date (\(from))")
            case .habitNotFound: throw ContentValidate.notFound("habit", field: "quest.criteria.habit_id")
            case .goalNotFound: throw ContentValidate.notFound("goal", field: "quest.criteria.goal_id")
            }
        }
    }

    public func get(request: GetQuestRequest, context: ServerContext) async throws -> Quest {
        let user = try context.actingUser()
        return try await fetch(try Validate.uuid(request.questID, field: "quest_id"), user: user, deadline: context.deadline)
    }

    public func list(request: ListQuestsRequest, context: ServerContext) async throws -> ListQuestsResponse {
        let user = try context.actingUser()
        let status = try request.status.isEmpty ? nil : ContentValidate.oneOf(request.status, Self.statuses, field: "status")
        let size = try Validate.pageSize(request.pageSize, default: 20, maximum: 100)
        let after = try SortKeyToken.decode(request.pageToken)
        let rows = try await content.store.quests(of: user, status: status, after: after, limit: size + 1, now: content.now(), deadline: context.deadline)
        var response = ListQuestsResponse()
        response.quests = rows.prefix(size).map { Self.quest($0.quest) }
        if rows.count > size, let last = rows.prefix(size).last, let quest = response.quests.last {
            response.nextPageToken = SortKeyToken.encode(key: last.sortKey, id: quest.id)
        }
        return response
    }

    public func complete(request: CompleteQuestRequest, context: ServerContext) async throws -> CompleteQuestResponse {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "quest.completed", resourceType: "quest", resourceID: request.questID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.questID, field: "quest_id")
            let result = try await content.store.completeQuest(id, user: user, now: content.now(), origin: origin, deadline: context.deadline)
            return CompleteQuestResponse.with {
                $0.quest = Self.quest(result.quest)
                $0.reward = ContentMessages.reward(result.reward)
            }
        }
    }

    public func abandon(request: AbandonQuestRequest, context: ServerContext) async throws -> Quest {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "quest.abandoned", resourceType: "quest", resourceID: request.questID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.questID, field: "quest_id")
            let status = try await content.store.abandonQuest(id, user: user, now: content.now(), origin: origin, deadline: context.deadline)
            guard let status else { throw Self.notFound }
            guard ["active", "abandoned"].contains(status) else {
                throw RPCError(
                    code: .failedPrecondition, message: "the quest is \(status): only an active quest can be abandoned",
                    details: ErrorDetails(reason: "QUEST_CLOSED", fields: ["status": status]))
            }
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    // MARK: - Shared

    /// Validated criteria, as stored.
    struct Criteria {
        var habit: UUID?
        var goal: UUID?
        var metric: String?
    }

    static func criteria(type: String, _ given: QuestCriteria, target: Int32) throws -> Criteria {
        let habit = try ContentValidate.optionalID(given.habitID, field: "quest.criteria.habit_id")
        let goal = try ContentValidate.optionalID(given.goalID, field: "quest.criteria.goal_id")
        var milestoneMetric: String?
        func refuse(_ field: String, _ types: String) throws {
            throw Validate.invalid("quest.criteria.\(field)", "applies to \(types) quests only")
        }
        switch type {
        case "habit_chain":
            guard (1...1000).contains(target) else { throw Validate.invalid("quest.target", "is the streak to reach: 1–1000") }
        case "daily":
            guard (1...1000).contains(target) else { throw Validate.invalid("quest.target", "is the habit completions to make: 1–1000") }
        case "goal_completion":
            guard (1...100).contains(target) else { throw Validate.invalid("quest.target", "is the goals to complete: 1–100") }
            if goal != nil, target != 1 { throw Validate.invalid("quest.target", "must be 1 for a quest on one goal") }
        default:
            let metric = try ContentValidate.oneOf(given.metric, metrics, field: "quest.criteria.metric")
            guard (1...1_000_000).contains(target) else { throw Validate.invalid("quest.target", "must be 1–1000000") }
            milestoneMetric = metric
        }
        if habit != nil, type != "habit_chain" { try refuse("habit_id", "habit_chain") }
        if goal != nil, type != "goal_completion" { try refuse("goal_id", "goal_completion") }
        if !given.metric.isEmpty, type != "milestone" { try refuse("metric", "milestone") }
        return Criteria(habit: habit, goal: goal, metric: milestoneMetric)
    }

    func fetch(_ id: UUID, user: UUID, deadline: ContinuousClock.Instant?) async throws -> Quest {
        guard let record = try await content.store.quest(id, user: user, now: content.now(), deadline: deadline)
        else { throw Self.notFound }
        return Self.quest(record)
    }

    static func quest(_ record: QuestRecord) -> Quest {
        var quest = Quest()
        quest.id = record.id.postgresText
        quest.title = record.title
        quest.description_p = record.description ?? ""
        quest.questType = record.questType ?? ""
        quest.status = record.status
        quest.startDate = record.startDate.description
        quest.endDate = record.endDate.description
        quest.xpReward = record.xpReward
        quest.criteria = QuestCriteria.with {
            $0.habitID = ContentMessages.id(record.criteria.habitID)
            $0.goalID = ContentMessages.id(record.criteria.goalID)
            $0.metric = record.criteria.metric ?? ""
        }
        quest.target = record.target
        quest.progress = record.progress
        quest.createdBy = record.createdBy ?? ""
        quest.createdAt = Google_Protobuf_Timestamp(record.createdAt)
        if let completed = record.completedAt { quest.completedAt = Google_Protobuf_Timestamp(completed) }
        return quest
    }
}
