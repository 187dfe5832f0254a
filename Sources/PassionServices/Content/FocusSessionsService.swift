import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.FocusSessions`: one running session per user, paid by the minute on completion
/// (`passion_focus_complete`).
public struct FocusSessionsService: FocusSessions.ServiceProtocol {
    let content: ContentContext

    init(content: ContentContext) {
        self.content = content
    }

    static let statuses = ["abandoned", "active", "completed", "paused"]
    static let notFound = ContentValidate.notFound("focus session", field: "session_id")

    public func start(request: StartFocusRequest, context: ServerContext) async throws -> FocusSession {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: "focus_session.started", resourceType: "focus_session") {
            let user = try context.actingUser()
            let type = try ContentValidate.oneOf(request.sessionType, ["custom", "pomodoro"], field: "session_type")
            if type == "custom" {
                guard (1...480).contains(request.durationMinutes) else { throw Validate.invalid("duration_minutes", "must be 1–480 for a custom session") }
            } else if request.durationMinutes != 0 {
                throw Validate.invalid("duration_minutes", "a pomodoro lasts the pomodoro_minutes setting: leave it 0")
            }
            let goal = try ContentValidate.optionalID(request.goalID, field: "goal_id")
            let notes = try ContentValidate.description(request.notes, field: "notes")
            switch try await content.store.startFocus(
                user: user, goal: goal, type: type, minutes: type == "custom" ? request.durationMinutes : nil, notes: notes, now: content.now(),
                origin: origin, deadline: context.deadline)
            {
            case .started(let id): return try await fetch(id, user: user, deadline: context.deadline)
            case .userNotFound: throw UsersService.notFound
            case .goalNotFound: throw ContentValidate.notFound("goal", field: "goal_id")
            case .running(let running):
                throw RPCError(
                    code: .failedPrecondition, message: "a focus session is already running: complete or abandon it first",
                    details: ErrorDetails(reason: "FOCUS_SESSION_RUNNING", fields: ["session_id": running.postgresText]))
            }
        }
    }

    public func pause(request: FocusSessionRequest, context: ServerContext) async throws -> FocusSession {
        try await transition(.pause, request, context: context)
    }

    public func resume(request: FocusSessionRequest, context: ServerContext) async throws -> FocusSession {
        try await transition(.resume, request, context: context)
    }

    public func abandon(request: FocusSessionRequest, context: ServerContext) async throws -> FocusSession {
        try await transition(.abandon, request, context: context)
    }

    public func complete(request: FocusSessionRequest, context: ServerContext) async throws -> CompleteFocusResponse {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(
            origin, action: "focus_session.completed", resourceType: "focus_session", resourceID: request.sessionID
        ) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.sessionID, field: "session_id")
            let result = try await content.store.completeFocus(id, user: user, now: content.now(), origin: origin, deadline: context.deadline)
            return CompleteFocusResponse.with {
                $0.session = Self.session(result.session)
                $0.reward = ContentMessages.reward(result.reward)
                $0.quests = ContentMessages.quests(result.quests)
            }
        }
    }

    public func list(request: ListFocusSessionsRequest, context: ServerContext) async throws -> ListFocusSessionsResponse {
        let user = try context.actingUser()
        let status = try request.status.isEmpty ? nil : ContentValidate.oneOf(request.status, Self.statuses, field: "status")
        let size = try Validate.pageSize(request.pageSize, default: 20, maximum: 100)
        let after = try SortKeyToken.decode(request.pageToken)
        let rows = try await content.store.focusSessions(
            of: user, status: status, after: after, limit: size + 1, now: content.now(), deadline: context.deadline)
        var response = ListFocusSessionsResponse()
        response.sessions = rows.prefix(size).map { Self.session($0.session) }
        if rows.count > size, let last = rows.prefix(size).last, let session = response.sessions.last {
            response.nextPageToken = SortKeyToken.encode(key: last.sortKey, id: session.id)
        }
        return response
    }

    public func stats(request: FocusStatsRequest, context: ServerContext) async throws -> FocusStatsResponse {
        let user = try context.actingUser()
        guard (0...366).contains(request.days) else { throw Validate.invalid("days", "must be 1–366, or 0 for 7") }
        let days = request.days == 0 ? 7 : Int(request.days)
        let stats = try await content.store.focusStats(of: user, days: days, now: content.now(), deadline: context.deadline)
        func buckets(_ records: [FocusBucketRecord]) -> [DayMinutes] {
            records.map { bucket in
                DayMinutes.with {
                    $0.date = bucket.date.description
                    $0.minutes = bucket.minutes
                    $0.sessions = bucket.sessions
                }
            }
        }
        return FocusStatsResponse.with {
            $0.days = buckets(stats.days)
            $0.weeks = buckets(stats.weeks)
            $0.totalMinutes = stats.totalMinutes
        }
    }

    // MARK: - Shared

    /// Moves one session between statuses, answered with the session as it is after it.
    private func transition(_ transition: ContentStore.FocusTransition, _ request: FocusSessionRequest, context: ServerContext) async throws -> FocusSession {
        let origin = AuditOrigin(context)
        return try await content.trail.failures(origin, action: transition.action, resourceType: "focus_session", resourceID: request.sessionID) {
            let user = try context.actingUser()
            let id = try Validate.uuid(request.sessionID, field: "session_id")
            guard let status = try await content.store.transitionFocus(
                transition, id: id, user: user, now: content.now(), origin: origin, deadline: context.deadline)
            else { throw Self.notFound }
            guard transition.from.contains(status) || status == transition.to else {
                throw RPCError(
                    code: .failedPrecondition, message: "the focus session is \(status)",
                    details: ErrorDetails(reason: "FOCUS_SESSION_ENDED", fields: ["status": status]))
            }
            return try await fetch(id, user: user, deadline: context.deadline)
        }
    }

    func fetch(_ id: UUID, user: UUID, deadline: ContinuousClock.Instant?) async throws -> FocusSession {
        guard let record = try await content.store.focusSession(id, user: user, now: content.now(), deadline: deadline)
        else { throw Self.notFound }
        return Self.session(record)
    }

    static func session(_ record: FocusSessionRecord) -> FocusSession {
        var session = FocusSession()
        session.id = record.id.postgresText
        session.goalID = ContentMessages.id(record.goalID)
        session.sessionType = record.sessionType ?? ""
        session.durationMinutes = record.durationMinutes
        session.actualDurationMinutes = record.actualDurationMinutes ?? 0
        session.status = record.status
        session.notes = record.notes ?? ""
        session.focusedSeconds = record.focusedSeconds
        session.startedAt = Google_Protobuf_Timestamp(record.startedAt)
        if let at = record.pausedAt { session.pausedAt = Google_Protobuf_Timestamp(at) }
        if let at = record.completedAt { session.completedAt = Google_Protobuf_Timestamp(at) }
        return session
    }
}
