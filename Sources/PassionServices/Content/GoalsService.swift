import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Goals`: the caller's goals, their completion rewards, and the dashboard.
public struct GoalsService: Goals.ServiceProtocol {
    let content: ContentContext

    init(content: ContentContext) {
        self.content = content
    }

    static let fields = ["title", "description", "category", "priority", "target_date", "metadata"]
    static let statuses = ["active", "completed", "abandoned"]
    static let notFound = ContentValidate.notFound("goal", field: "goal_id")

    public func create(request: CreateGoalRequest, context: ServerContext) async throws -> Goal {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "goal.created", resourceType: "goal") {
            let user = try context.actingUser()
            let given = request.goal
            let title = try ContentValidate.title(given.title, field: "goal.title")
            let description = try ContentValidate.description(given.description_p, field: "goal.description")
            let category = try ContentValidate.category(given.category, field: "goal.category")
            let priority = try Self.priority(given.priority)
            let target = try Validate.date(given.targetDate, field: "goal.target_date")
            let metadata = try ContentValidate.metadata(given.metadata, field: "goal.metadata")
            let draft = ContentStore.GoalDraft(
                title: title, description: description, category: category, priority: priority, targetDate: target, metadata: metadata)
            let record = try await content.store.createGoal(draft, user: user, origin: origin, deadline: context.deadline)
            guard let record else { throw RPCError(code: .internal, message: "insert returned nothing") }
            return try Self.goal(record)
        }
    }

    public func get(request: GetGoalRequest, context: ServerContext) async throws -> Goal {
        let user = try context.actingUser()
        let id = try Validate.uuid(request.goalID, field: "goal_id")
        return try await fetch(id, user: user, deadline: context.deadline)
    }

    public func list(request: ListGoalsRequest, context: ServerContext) async throws -> ListGoalsResponse {
        let user = try context.actingUser()
        let status = try request.status.isEmpty ? nil : ContentValidate.oneOf(request.status, Self.statuses, field: "status")
        let category = try ContentValidate.category(request.category, field: "category")
        let size = try Validate.pageSize(request.pageSize, default: 20, maximum: 100)
        let order: ContentStore.GoalOrder
        switch request.order {
        case .priority, .UNRECOGNIZED: order = .priority
        case .targetDate: order = .targetDate
        case .created: order = .created
        }
        let after = try SortKeyToken.decode(request.pageToken, order: order.rawValue)
        let rows = try await content.store.goals(
            of: user, status: status, category: category, archived: request.archived, includeHidden: request.includeHidden, order: order,
            after: after, limit: size + 1, deadline: context.deadline)
        var response = ListGoalsResponse()
        response.goals = try rows.prefix(size).map { try Self.goal($0.goal) }
        if rows.count > size, let last = rows.prefix(size).last, let goal = response.goals.last {
            response.nextPageToken = SortKeyToken.encode(key: last.sortKey, id: goal.id, order: order.rawValue)
        }
        return response
    }

    public func update(request: UpdateGoalRequest, context: ServerContext) async throws -> Goal {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "goal.updated", resourceType: "goal", resourceID: request.goal.id) {
            let user = try context.actingUser()
            let given = request.goal
            let id = try Validate.uuid(given.id, field: "goal.id")
            let fields = try Validate.mask(request.updateMask, allowed: Self.fields)
            let title = try fields.contains("title") ? ContentValidate.title(given.title, field: "goal.title") : nil
            let description = try fields.contains("description") ? ContentValidate.description(given.description_p, field: "goal.description") : nil
            let category = try fields.contains("category") ? ContentValidate.category(given.category, field: "goal.category") : nil
            let priority = try fields.contains("priority") ? Self.priority(given.priority) : nil
            let target = try fields.contains("target_date") ? Validate.date(given.targetDate, field: "goal.target_date") : nil
            let metadata = try fields.contains("metadata") ? ContentValidate.metadata(given.metadata, field: "goal.metadata") : nil
            let draft = ContentStore.GoalDraft(
                title: title, description: description, category: category, priority: priority, targetDate: target, metadata: metadata)
            guard try await content.store.updateGoal(id, user: user, fields: fields, from: draft, origin: origin, deadline: context.deadline)
            else { throw Self.notFound }
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    public func complete(request: GoalRequest, context: ServerContext) async throws -> CompleteGoalResponse {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "goal.completed", resourceType: "goal", resourceID: request.goalID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.goalID, field: "goal_id")
            let result = try await content.store.completeGoal(id, user: user, now: content.now(), origin: origin, deadline: context.deadline)
            return try CompleteGoalResponse.with {
                $0.goal = try Self.goal(result.goal)
                $0.reward = ContentMessages.reward(result.reward)
                $0.quests = ContentMessages.quests(result.quests)
            }
        }
    }

    public func abandon(request: GoalRequest, context: ServerContext) async throws -> Goal {
        try await transition(.abandon, request, context: context)
    }

    public func delete(request: GoalRequest, context: ServerContext) async throws -> Goal {
        try await transition(.delete, request, context: context)
    }

    public func restore(request: GoalRequest, context: ServerContext) async throws -> Goal {
        try await transition(.restore, request, context: context)
    }

    public func archive(request: GoalRequest, context: ServerContext) async throws -> Goal {
        try await transition(.archive, request, context: context)
    }

    public func unarchive(request: GoalRequest, context: ServerContext) async throws -> Goal {
        try await transition(.unarchive, request, context: context)
    }

    public func dashboard(request: DashboardRequest, context: ServerContext) async throws -> DashboardResponse {
        let user = try context.actingUser()
        guard let record = try await content.store.dashboard(of: user, now: content.now(), deadline: context.deadline) else {
            throw UsersService.notFound
        }
        return DashboardResponse.with {
            $0.userID = record.userID.postgresText
            $0.displayName = record.displayName ?? ""
            $0.today = record.today.description
            $0.totalXp = record.totalXP
            $0.totalCoins = record.totalCoins
            $0.level = record.level
            $0.xpToNextLevel = record.nextLevelXP - record.totalXP
            $0.achievementsUnlocked = record.achievementsUnlocked
            $0.activeGoals = record.activeGoals
            $0.activeHabits = record.activeHabits
            $0.habitsDue = record.habitsDue
        }
    }

    // MARK: - Shared

    /// A state change of one goal, answered with the goal as it is after it.
    private func transition(_ transition: ContentStore.GoalTransition, _ request: GoalRequest, context: ServerContext) async throws -> Goal {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: transition.action, resourceType: "goal", resourceID: request.goalID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.goalID, field: "goal_id")
            guard let verdict = try await content.store.transitionGoal(transition, id: id, user: user, origin: origin, deadline: context.deadline)
            else { throw Self.notFound }
            if verdict != "apply" && verdict != "same" {
                throw RPCError(code: .failedPrecondition, message: verdict, details: ErrorDetails(reason: "GOAL_NOT_ACTIVE"))
            }
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    func fetch(_ id: UUID, user: UUID, deadline: ContinuousClock.Instant?) async throws -> Goal {
        guard let record = try await content.store.goal(id, user: user, deadline: deadline)
        else { throw Self.notFound }
        return try Self.goal(record)
    }

    /// 0 means none; otherwise 1–5.
    static func priority(_ value: Int32) throws -> Int32? {
        guard value != 0 else { return nil }
        guard (1...5).contains(value) else { throw Validate.invalid("goal.priority", "must be 1–5, or 0 for none") }
        return value
    }

    static func goal(_ record: GoalRecord) throws -> Goal {
        var goal = Goal()
        goal.id = record.id.postgresText
        goal.title = record.title
        goal.description_p = record.description ?? ""
        goal.category = record.category ?? ""
        goal.status = record.status
        goal.priority = record.priority ?? 0
        goal.targetDate = record.targetDate?.description ?? ""
        goal.metadata = try ContentMessages.metadata(record.metadata)
        goal.archived = record.archived
        goal.deleted = !record.isActive
        goal.habitCount = record.habitCount
        goal.createdAt = Google_Protobuf_Timestamp(record.createdAt)
        goal.updatedAt = Google_Protobuf_Timestamp(record.updatedAt)
        if let completed = record.completedAt { goal.completedAt = Google_Protobuf_Timestamp(completed) }
        return goal
    }
}
