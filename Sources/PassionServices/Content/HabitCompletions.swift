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
            guard let json = try await content.json("""
                SELECT passion_habit_complete(\(user), \(id), \(request.yesterday), \(date)::date, \(content.offlineDays),
                                              \(content.now()), \(audit.principal), \(audit.ip)::inet, \(audit.userAgent))::text AS result
                """, deadline: context.deadline)
            else { throw RPCError(code: .internal, message: "completion returned nothing") }
            return CompleteHabitResponse.with {
                $0.completion = Self.completion(json["completion"] as? [String: Any] ?? [:])
                // Just completed: its streak is current and its period done.
                var habit = json["habit"] as? [String: Any] ?? [:]
                habit["streak"] = habit["streak_days"]
                habit["done_this_period"] = true
                $0.habit = (try? Self.habit(habit)) ?? Habit()
                $0.reward = ContentJSON.reward(json["reward"])
                $0.quests = ContentJSON.quests(json["quests"])
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
            guard let json = try await content.json("""
                SELECT passion_habit_uncomplete(\(user), \(id), \(content.offlineDays), \(now), \(audit.principal),
                                                \(audit.ip)::inet, \(audit.userAgent))::text AS result
                """, deadline: context.deadline)
            else { throw RPCError(code: .internal, message: "uncompletion returned nothing") }
            let habitID = try Validate.uuid(ContentJSON.id((json["habit"] as? [String: Any])?["id"]), field: "habit")
            var response = UncompleteHabitResponse.with {
                $0.completion = Self.completion(json["completion"] as? [String: Any] ?? [:])
                $0.reward = ContentJSON.reward(json["reward"])
            }
            // As reads show it: the streak a reader sees now, and whether the period is done.
            response.habit = try await fetch(habitID, user: user, deadline: context.deadline)
            return response
        }
    }
}
