import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Users`: the caller's profile and account, and user administration.
public struct UsersService: Users.ServiceProtocol {
    let pool: PostgresPool
    let authenticator: StoreAuthenticator
    let trail: AuditTrail

    public init(pool: PostgresPool, authenticator: StoreAuthenticator, trail: AuditTrail) {
        self.pool = pool
        self.authenticator = authenticator
        self.trail = trail
    }

    static let notFound = RPCError(code: .notFound, message: "user not found", details: ErrorDetails(reason: "USER_NOT_FOUND"))

    public func me(request: MeRequest, context: ServerContext) async throws -> User {
        let userID = try context.actingUser()
        let row = try await pool.withConnection(deadline: context.deadline) { connection in
            try await connection.query("SELECT \(unsafeSQL: UserRows.columns) FROM users WHERE id = \(userID) AND deleted_at IS NULL").first
        }
        guard let row else { throw Self.notFound }
        return try UserRows.user(row)
    }

    public func updateProfile(request: UpdateProfileRequest, context: ServerContext) async throws -> User {
        let origin = AuditOrigin(context)
        let userID = try context.actingUser()
        return try await trail.failures(origin, action: "user.updated", resourceType: "user", resourceID: userID.postgresText) {
            let fields = try Validate.mask(request.updateMask, allowed: ["display_name", "time_zone"])
            let displayName = try Validate.optionalText(request.displayName, field: "display_name")
            let timeZone = try Validate.timeZone(request.timeZone, field: "time_zone")
            let row = try await pool.transaction(deadline: context.deadline) { connection -> Row? in
                let row = try await connection.query("""
                    UPDATE users SET
                        display_name = CASE WHEN \(fields.contains("display_name")) THEN \(displayName) ELSE display_name END,
                        timezone = CASE WHEN \(fields.contains("time_zone")) THEN \(timeZone) ELSE timezone END,
                        updated_at = now()
                    WHERE id = \(userID) AND deleted_at IS NULL
                    RETURNING \(unsafeSQL: UserRows.columns)
                    """).first
                if row != nil {
                    try await connection.insertAudit(origin.record(
                        "user.updated", resourceType: "user", resourceID: userID.postgresText,
                        details: ["fields": fields.sorted().joined(separator: ",")]))
                }
                return row
            }
            guard let row else { throw Self.notFound }
            return try UserRows.user(row)
        }
    }

    public func deleteAccount(request: DeleteAccountRequest, context: ServerContext) async throws -> DeleteAccountResponse {
        let origin = AuditOrigin(context)
        let userID = try context.actingUser()
        let revoked = try await pool.transaction(deadline: context.deadline) { connection -> Int? in
            let sessions = try await connection.query("""
                SELECT count(*) AS n FROM sessions WHERE user_id = \(userID) AND revoked_at IS NULL AND expires_at > now()
                """).first?.require("n", as: Int.self) ?? 0
            // The users_soft_delete_sessions trigger deletes the sessions in this transaction.
            let updated = try await connection.query("""
                UPDATE users SET is_active = false, deleted_at = now(), updated_at = now()
                WHERE id = \(userID) AND deleted_at IS NULL
                """).affected
            guard updated == 1 else { return nil }
            try await connection.insertAudit(origin.record(
                "user.deleted", resourceType: "user", resourceID: userID.postgresText,
                details: ["sessions_revoked": "\(sessions)"]))
            return sessions
        }
        guard let revoked else { throw Self.notFound }
        authenticator.forgetDeleted(userID: userID.postgresText)
        return DeleteAccountResponse.with { $0.sessionsRevoked = Int32(clamping: revoked) }
    }

    public func getUser(request: GetUserRequest, context: ServerContext) async throws -> User {
        let userID = try Validate.uuid(request.userID, field: "user_id")
        let row = try await pool.withConnection(deadline: context.deadline) { connection in
            try await connection.query("SELECT \(unsafeSQL: UserRows.columns) FROM users WHERE id = \(userID)").first
        }
        guard let row else { throw Self.notFound }
        return try UserRows.user(row)
    }

    public func listUsers(request: ListUsersRequest, context: ServerContext) async throws -> ListUsersResponse {
        let size = try Validate.pageSize(request.pageSize, default: 50, maximum: 500)
        let after = try PageToken.decode(request.pageToken, count: 2)
        let afterMicros = after.flatMap { Int64($0[0]) }
        let afterID = try after.map { try Validate.uuid($0[1], field: "page_token") }
        if after != nil, afterMicros == nil { throw Validate.invalid("page_token", "is not a token from a previous response") }
        let prefix = request.emailPrefix.trimmingCharacters(in: .whitespaces).lowercased()
        guard Validate.fits(prefix, 255) else { throw Validate.invalid("email_prefix", "is longer than 255 characters") }
        // LIKE metacharacters in the prefix are data, not patterns.
        let pattern = prefix.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
            .replacingOccurrences(of: "_", with: "\\_") + "%"
        let rows = try await pool.withConnection(deadline: context.deadline) { connection in
            try await connection.query("""
                SELECT \(unsafeSQL: UserRows.columns), (extract(epoch FROM created_at) * 1000000)::bigint AS cursor_us
                FROM users
                WHERE (\(request.includeDeleted) OR deleted_at IS NULL) AND email LIKE \(pattern)
                  AND (\(afterMicros)::bigint IS NULL
                       OR (created_at, id) > (timestamptz 'epoch' + \(afterMicros)::bigint * interval '1 microsecond', \(afterID)::uuid))
                ORDER BY created_at, id
                LIMIT \(size + 1)
                """)
        }
        let page = Array(rows.prefix(size))
        var response = ListUsersResponse()
        response.users = try page.map(UserRows.user)
        if rows.count > size, let last = page.last {
            response.nextPageToken = PageToken.encode([
                String(try last.require("cursor_us", as: Int64.self)), try last.require("id", as: UUID.self).postgresText,
            ])
        }
        return response
    }

    public func restoreUser(request: RestoreUserRequest, context: ServerContext) async throws -> User {
        let origin = AuditOrigin(context)
        let userID = try Validate.uuid(request.userID, field: "user_id")
        return try await trail.failures(origin, action: "user.restored", resourceType: "user", resourceID: userID.postgresText) {
            let row = try await pool.transaction(deadline: context.deadline) { connection -> Row? in
                do {
                    let restored = try await connection.query("""
                        UPDATE users SET is_active = true, deleted_at = NULL, updated_at = now()
                        WHERE id = \(userID) AND deleted_at IS NOT NULL
                        RETURNING \(unsafeSQL: UserRows.columns)
                        """).first
                    if restored != nil {
                        try await connection.insertAudit(origin.record(
                            "user.restored", resourceType: "user", resourceID: userID.postgresText, userID: userID))
                        return restored
                    }
                } catch let error as StoreError where error.sqlState == "23505" {
                    throw RPCError(
                        code: .alreadyExists, message: "the account's email now belongs to another active account",
                        details: ErrorDetails(reason: "EMAIL_IN_USE", fields: ["field": "user_id"]))
                }
                // Not deleted (restoring twice is a no-op) or no such user.
                return try await connection.query("SELECT \(unsafeSQL: UserRows.columns) FROM users WHERE id = \(userID)").first
            }
            guard let row else { throw Self.notFound }
            return try UserRows.user(row)
        }
    }
}
