import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Audit`: the caller's recent activity, and the whole trail for admins.
public struct AuditService: Audit.ServiceProtocol {
    let pool: PostgresPool

    public init(pool: PostgresPool) {
        self.pool = pool
    }

    public func recentActivity(request: RecentActivityRequest, context: ServerContext) async throws -> RecentActivityResponse {
        let userID = try context.actingUser()
        guard (0...90).contains(request.days) else { throw Validate.invalid("days", "must be 0–90") }
        let days = request.days == 0 ? 7 : Int(request.days)
        let rows = try await pool.withConnection(deadline: context.deadline) { connection in
            // Refused and failed attempts did not happen: counted only when asked for, apart.
            try await connection.query("""
                SELECT action, resource_type, status, count(*) AS count, max(created_at) AS last_at
                FROM audit_logs
                WHERE user_id = \(userID) AND created_at > now() - \(days) * interval '1 day'
                  AND (status = 'success' OR \(request.includeFailures))
                GROUP BY action, resource_type, status
                ORDER BY last_at DESC
                """)
        }
        return try RecentActivityResponse.with { response in
            response.activities = try rows.map { row in
                try ActivitySummary.with {
                    $0.action = try row.require("action", as: String.self)
                    $0.resourceType = try row.decode("resource_type", as: String.self) ?? ""
                    $0.count = try row.require("count", as: Int64.self)
                    $0.status = try row.require("status", as: String.self)
                    $0.lastAt = Google_Protobuf_Timestamp(try row.require("last_at", as: Date.self))
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
        let rows = try await pool.withConnection(deadline: context.deadline) { connection in
            try await connection.query("""
                SELECT id, user_id, action, resource_type, resource_id, status, principal, host(ip_address) AS ip, user_agent,
                       details, created_at
                FROM audit_logs
                WHERE (\(userID)::uuid IS NULL OR user_id = \(userID)::uuid)
                  AND (\(action)::text IS NULL OR action = \(action)::text)
                  AND (\(since)::timestamptz IS NULL OR created_at >= \(since)::timestamptz)
                  AND (\(until)::timestamptz IS NULL OR created_at < \(until)::timestamptz)
                  AND (\(before)::bigint IS NULL OR id < \(before)::bigint)
                ORDER BY id DESC
                LIMIT \(size + 1)
                """)
        }
        var response = QueryAuditLogResponse()
        response.entries = try Array(rows.prefix(size)).map { row in
            var entry = AuditEntry()
            entry.id = try row.require("id", as: Int64.self)
            entry.userID = try row.decode("user_id", as: UUID.self)?.postgresText ?? ""
            entry.action = try row.require("action", as: String.self)
            entry.resourceType = try row.decode("resource_type", as: String.self) ?? ""
            entry.resourceID = try row.decode("resource_id", as: String.self) ?? ""
            entry.status = try row.decode("status", as: String.self) ?? ""
            entry.principal = try row.decode("principal", as: String.self) ?? ""
            entry.ipAddress = try row.decode("ip", as: String.self) ?? ""
            entry.userAgent = try row.decode("user_agent", as: String.self) ?? ""
            if let details = try row.decode("details", as: JSONB.self) {
                entry.details = try Google_Protobuf_Struct(jsonString: details.json)
            }
            entry.createdAt = Google_Protobuf_Timestamp(try row.require("created_at", as: Date.self))
            return entry
        }
        if rows.count > size, let last = response.entries.last {
            response.nextPageToken = PageToken.encode([String(last.id)])
        }
        return response
    }
}
