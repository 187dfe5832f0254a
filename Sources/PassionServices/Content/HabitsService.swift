import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Habits`: habits, completions and streaks in the user's time zone. Completing and
/// taking a completion back are in HabitCompletions.swift.
public struct HabitsService: Habits.ServiceProtocol {
    let content: ContentContext

    init(content: ContentContext) {
        self.content = content
    }

    static let fields = ["title", "description", "category", "frequency", "goal_id"]
    static let frequencies = ["daily", "weekly", "monthly"]
    static let notFound = ContentValidate.notFound("habit", field: "habit_id")
    static let goalNotFound = ContentValidate.notFound("goal", field: "habit.goal_id")

    public func create(request: CreateHabitRequest, context: ServerContext) async throws -> Habit {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "habit.created", resourceType: "habit") {
            let user = try context.actingUser()
            let given = request.habit
            let title = try ContentValidate.title(given.title, field: "habit.title")
            let description = try ContentValidate.description(given.description_p, field: "habit.description")
            let category = try ContentValidate.category(given.category, field: "habit.category")
            let frequency = try given.frequency.isEmpty
                ? "daily" : ContentValidate.oneOf(given.frequency, Self.frequencies, field: "habit.frequency")
            let goal = try ContentValidate.optionalID(given.goalID, field: "habit.goal_id")
            let draft = ContentStore.HabitDraft(title: title, description: description, category: category, frequency: frequency, goal: goal)
            let id: UUID
            do {
                id = try await content.store.createHabit(draft, user: user, now: content.now(), origin: origin, deadline: context.deadline)
            } catch ContentStore.HabitWriteRefusal.goalNotFound {
                throw Self.goalNotFound
            }
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    public func get(request: GetHabitRequest, context: ServerContext) async throws -> Habit {
        let user = try context.actingUser()
        return try await fetch(try Validate.uuid(request.habitID, field: "habit_id"), user: user, deadline: context.deadline)
    }

    public func list(request: ListHabitsRequest, context: ServerContext) async throws -> ListHabitsResponse {
        let user = try context.actingUser()
        let goal = try ContentValidate.optionalID(request.goalID, field: "goal_id")
        let size = try Validate.pageSize(request.pageSize, default: 50, maximum: 200)
        let after = try SortKeyToken.decode(request.pageToken)
        let rows = try await content.store.habits(
            of: user, goal: goal, includeArchived: request.includeArchived, after: after, limit: size + 1, now: content.now(),
            deadline: context.deadline)
        var response = ListHabitsResponse()
        response.habits = rows.prefix(size).map { Self.habit($0.habit) }
        if rows.count > size, let last = rows.prefix(size).last, let habit = response.habits.last {
            response.nextPageToken = SortKeyToken.encode(key: last.sortKey, id: habit.id)
        }
        return response
    }

    public func update(request: UpdateHabitRequest, context: ServerContext) async throws -> Habit {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "habit.updated", resourceType: "habit", resourceID: request.habit.id) {
            let user = try context.actingUser()
            let given = request.habit
            let id = try Validate.uuid(given.id, field: "habit.id")
            let fields = try Validate.mask(request.updateMask, allowed: Self.fields)
            let title = try fields.contains("title") ? ContentValidate.title(given.title, field: "habit.title") : nil
            let description = try fields.contains("description") ? ContentValidate.description(given.description_p, field: "habit.description") : nil
            let category = try fields.contains("category") ? ContentValidate.category(given.category, field: "habit.category") : nil
            let frequency = try fields.contains("frequency") ? ContentValidate.oneOf(given.frequency, Self.frequencies, field: "habit.frequency") : nil
            let goal = try fields.contains("goal_id") ? ContentValidate.optionalID(given.goalID, field: "habit.goal_id") : nil
            let draft = ContentStore.HabitDraft(title: title, description: description, category: category, frequency: frequency, goal: goal)
            do {
                try await content.store.updateHabit(
                    id, user: user, fields: fields, from: draft, now: content.now(), origin: origin, deadline: context.deadline)
            } catch let refusal as ContentStore.HabitWriteRefusal {
                throw refusal == .goalNotFound ? Self.goalNotFound : Self.notFound
            }
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    public func pause(request: HabitRequest, context: ServerContext) async throws -> Habit {
        try await setActive(request, false, action: "habit.paused", context: context)
    }

    public func resume(request: HabitRequest, context: ServerContext) async throws -> Habit {
        try await setActive(request, true, action: "habit.resumed", context: context)
    }

    public func archive(request: HabitRequest, context: ServerContext) async throws -> Habit {
        try await setArchived(request, true, action: "habit.archived", context: context)
    }

    public func unarchive(request: HabitRequest, context: ServerContext) async throws -> Habit {
        try await setArchived(request, false, action: "habit.unarchived", context: context)
    }

    public func today(request: TodayRequest, context: ServerContext) async throws -> TodayResponse {
        let user = try context.actingUser()
        guard let today = try await content.store.today(of: user, now: content.now(), deadline: context.deadline) else {
            throw UsersService.notFound
        }
        return TodayResponse.with {
            $0.date = today.date.description
            $0.timeZone = today.zone
            $0.habits = today.habits.map { record in
                let habit = Self.habit(record)
                return HabitToday.with {
                    $0.habit = habit
                    $0.status = habit.doneThisPeriod ? "completed" : "pending"
                }
            }
        }
    }

    public func history(request: HistoryRequest, context: ServerContext) async throws -> HistoryResponse {
        let user = try context.actingUser()
        let habit = try ContentValidate.optionalID(request.habitID, field: "habit_id")
        let from = try Validate.date(request.fromDate, field: "from_date")
        let to = try Validate.date(request.toDate, field: "to_date")
        if let from, let to {
            guard from <= to else { throw Validate.invalid("to_date", "is before from_date") }
            guard to.daysSinceEpoch - from.daysSinceEpoch <= 366 else { throw Validate.invalid("to_date", "is more than 366 days after from_date") }
        }
        let rows = try await content.store.completions(of: user, habit: habit, from: from, to: to, now: content.now(), deadline: context.deadline)
        if let habit, rows.isEmpty {
            // An empty history of a habit that is not the caller's must not read as "no completions".
            _ = try await fetch(habit, user: user, deadline: context.deadline)
        }
        return HistoryResponse.with { $0.completions = rows.map(Self.completion) }
    }

    // MARK: - Shared

    private func setActive(_ request: HabitRequest, _ active: Bool, action: String, context: ServerContext) async throws -> Habit {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: action, resourceType: "habit", resourceID: request.habitID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.habitID, field: "habit_id")
            try await content.store.setHabitActive(
                id, user: user, active: active, now: content.now(), action: action, origin: origin, deadline: context.deadline)
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    private func setArchived(_ request: HabitRequest, _ archived: Bool, action: String, context: ServerContext) async throws -> Habit {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: action, resourceType: "habit", resourceID: request.habitID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.habitID, field: "habit_id")
            let found = try await content.store.setHabitArchived(
                id, user: user, archived: archived, action: action, origin: origin, deadline: context.deadline)
            guard found else { throw Self.notFound }
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    func fetch(_ id: UUID, user: UUID, deadline: ContinuousClock.Instant?) async throws -> Habit {
        guard let record = try await content.store.habit(id, user: user, now: content.now(), deadline: deadline)
        else { throw Self.notFound }
        return Self.habit(record)
    }

    static func habit(_ record: HabitRecord) -> Habit {
        var habit = Habit()
        habit.id = record.id.postgresText
        habit.goalID = ContentMessages.id(record.goalID)
        habit.title = record.title
        habit.description_p = record.description ?? ""
        habit.category = record.category ?? ""
        habit.frequency = record.frequency
        habit.streak = record.streak
        habit.totalCompletions = record.totalCompletions
        habit.paused = !record.isActive
        habit.archived = record.archived
        habit.doneThisPeriod = record.doneThisPeriod
        habit.createdAt = Google_Protobuf_Timestamp(record.createdAt)
        habit.updatedAt = Google_Protobuf_Timestamp(record.updatedAt)
        return habit
    }

    static func completion(_ record: HabitCompletionRecord) -> HabitCompletion {
        HabitCompletion.with {
            $0.id = record.id.postgresText
            $0.habitID = record.habitID.postgresText
            $0.completionDate = record.completionDate.description
            $0.completedAt = Google_Protobuf_Timestamp(record.completedAt)
        }
    }
}
