import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Audit`: the caller's recent activity, and the whole trail for admins.
public struct AuditService: Audit.ServiceProtocol {
    let store: IdentityStore

    public init(pool: PostgresPool) {
        self.store = IdentityStore(pool: pool)
    }

    public func recentActivity(request: RecentActivityRequest, context: ServerContext) async throws -> RecentActivityResponse {
        let userID = try context.actingUser()
        // The audit retention may not be shorter than this window (AuditRetention.shortestDays).
        guard (0...AuditRetention.shortestDays).contains(Int(request.days)) else {
            throw Validate.invalid("days", "must be 0–\(AuditRetention.shortestDays)")
        }
        let days = request.days == 0 ? 7 : Int(request.days)
        let activities = try await store.recentActivity(
            of: userID, days: days, includeFailures: request.includeFailures, deadline: context.deadline)
        return RecentActivityResponse.with { response in
            response.activities = activities.map { activity in
                ActivitySummary.with {
                    $0.action = activity.action
                    $0.resourceType = activity.resourceType ?? ""
                    $0.count = activity.count
                    $0.status = activity.status
                    $0.lastAt = Google_Protobuf_Timestamp(activity.lastAt)
                }
            }
        }
    }

    public func query(request: QueryAuditLogRequest, context: ServerContext) async throws -> QueryAuditLogResponse {
        let size = try Validate.pageSize(request.pageSize, default: 100, maximum: 1000)
        let userID = try request.userID.isEmpty ? nil : Validate.uuid(request.userID, field: "user_id")
        let action = request.action.isEmpty ? nil : request.action
        let since = try request.hasSince ? Validate.timestamp(request.since, field: "since") : nil
        let until = try request.hasUntil ? Validate.timestamp(request.until, field: "until") : nil
        if let since, let until, until < since { throw Validate.invalid("until", "is before since") }
        let before = try PageToken.decode(request.pageToken, count: 1).map { parts -> Int64 in
            guard let id = Int64(parts[0]) else { throw Validate.invalid("page_token", "is not a token from a previous response") }
            return id
        }
        let filter = IdentityStore.AuditFilter(userID: userID, action: action, since: since, until: until, before: before)
        let records = try await store.auditLog(filter, limit: size + 1, deadline: context.deadline)
        var response = QueryAuditLogResponse()
        response.entries = try records.prefix(size).map { record in
            var entry = AuditEntry()
            entry.id = record.id
            entry.userID = record.userID?.postgresText ?? ""
            entry.action = record.action
            entry.resourceType = record.resourceType ?? ""
            entry.resourceID = record.resourceID ?? ""
            entry.status = record.status ?? ""
            entry.principal = record.principal ?? ""
            entry.ipAddress = record.ipAddress ?? ""
            entry.userAgent = record.userAgent ?? ""
            if let details = record.details {
                entry.details = try Google_Protobuf_Struct(jsonString: details.json)
            }
            entry.createdAt = Google_Protobuf_Timestamp(record.createdAt)
            return entry
        }
        if records.count > size, let last = response.entries.last {
            response.nextPageToken = PageToken.encode([String(last.id)])
        }
        return response
    }
}
