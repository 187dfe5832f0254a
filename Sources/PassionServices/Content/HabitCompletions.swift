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
            let date = try ContentValidate.date(request.localDate, field: "local_date")
            if date != nil, request.yesterday { throw Validate.invalid("local_date", "give local_date or yesterday, not both") }
            let audit = origin.sqlArguments
            guard let result = try await content.document("""
                SELECT passion_habit_complete(\(user), \(id), \(request.yesterday), \(date)::date, \(content.offlineDays),
                                              \(content.now()), \(audit.principal), \(audit.ip)::inet, \(audit.userAgent))::text AS result
                """, deadline: context.deadline)
            else { throw RPCError(code: .internal, message: "completion returned nothing") }
            let completion = try result.requireRecord("completion", as: HabitCompletionRecord.self)
            guard let habit = try result.nested("habit") else { throw RecordDecodingError(field: "habit", problem: "is NULL or missing") }
            return try CompleteHabitResponse.with {
                $0.completion = Self.completion(completion)
                $0.habit = Self.habit(try HabitRecord(fields: habit, justCompleted: true))
                $0.reward = try ContentMessages.reward(result)
                $0.quests = ContentMessages.quests(try result.records("quests"))
            }
        }
    }

    public func uncomplete(request: UncompleteHabitRequest, context: ServerContext) async throws -> UncompleteHabitResponse {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "habit.uncompleted", resourceType: "habit_completion",
                                                 resourceID: request.completionID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.completionID, field: "completion_id")
            let audit = origin.sqlArguments
            let now = content.now()
            guard let result = try await content.document("""
                SELECT passion_habit_uncomplete(\(user), \(id), \(content.offlineDays), \(now), \(audit.principal),
                                                \(audit.ip)::inet, \(audit.userAgent))::text AS result
                """, deadline: context.deadline)
            else { throw RPCError(code: .internal, message: "uncompletion returned nothing") }
            guard let habitID = try result.nested("habit")?.require("id", as: UUID.self) else {
                throw RecordDecodingError(field: "habit", problem: "is NULL or missing")
            }
            var response = try UncompleteHabitResponse.with {
                $0.completion = Self.completion(try result.requireRecord("completion"))
                $0.reward = try ContentMessages.reward(result)
            }
            // As reads show it: the streak a reader sees now, and whether the period is done.
            response.habit = try await fetch(habitID, user: user, deadline: context.deadline)
            return response
        }
    }
}
