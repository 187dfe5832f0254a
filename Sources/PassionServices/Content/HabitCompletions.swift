import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// Habits.Complete and Habits.Uncomplete: each one call of a database function
/// (`passion_habit_complete`, `passion_habit_uncomplete`, 0012_reward_integrity.sql) that
/// stores its result, so a repeat answers the first result marked replayed.
extension HabitsService {
    public func complete(request: CompleteHabitRequest, context: ServerContext) async throws -> CompleteHabitResponse {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "habit.completed", resourceType: "habit", resourceID: request.habitID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.habitID, field: "habit_id")
            let date = try Validate.date(request.localDate, field: "local_date")
            if date != nil, request.yesterday { throw Validate.invalid("local_date", "give local_date or yesterday, not both") }
            let result = try await content.store.completeHabit(
                id, user: user, yesterday: request.yesterday, date: date, offlineDays: content.offlineDays, now: content.now(),
                origin: origin, deadline: context.deadline)
            return CompleteHabitResponse.with {
                $0.completion = Self.completion(result.completion)
                $0.habit = Self.habit(result.habit)
                $0.reward = ContentMessages.reward(result.reward)
                $0.quests = ContentMessages.quests(result.quests)
            }
        }
    }

    public func uncomplete(request: UncompleteHabitRequest, context: ServerContext) async throws -> UncompleteHabitResponse {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "habit.uncompleted", resourceType: "habit_completion",
                                                 resourceID: request.completionID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.completionID, field: "completion_id")
            let result = try await content.store.uncompleteHabit(
                completion: id, user: user, offlineDays: content.offlineDays, now: content.now(), origin: origin, deadline: context.deadline)
            var response = UncompleteHabitResponse.with {
                $0.completion = Self.completion(result.completion)
                $0.reward = ContentMessages.reward(result.reward)
            }
            // As reads show it: the streak a reader sees now, and whether the period is done.
            response.habit = try await fetch(result.habitID, user: user, deadline: context.deadline)
            return response
        }
    }
}
