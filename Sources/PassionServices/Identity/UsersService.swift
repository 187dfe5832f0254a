import Foundation
import PassionServerAPI
import PassionIdentity
import PassionRPCServer
import PassionStore
import SwiftProtobuf

/// `passion.v1.Users`: the caller's profile and account, and user administration.
public struct UsersService: Users.ServiceProtocol {
    let store: IdentityStore
    let authenticator: StoreAuthenticator
    let trail: AuditTrail

    public init(pool: PostgresPool, authenticator: StoreAuthenticator, trail: AuditTrail) {
        self.store = IdentityStore(pool: pool)
        self.authenticator = authenticator
        self.trail = trail
    }

    static let notFound = RPCError(code: .notFound, message: "user not found", details: ErrorDetails(reason: "USER_NOT_FOUND"))

    public func me(request: MeRequest, context: ServerContext) async throws -> User {
        let userID = try context.actingUser()
        guard let record = try await store.activeUser(userID, deadline: context.deadline) else { throw Self.notFound }
        return Self.user(record)
    }

    public func updateProfile(request: UpdateProfileRequest, context: ServerContext) async throws -> User {
        let origin = AuditOrigin(context)
        let userID = try context.actingUser()
        return try await trail.failures(origin, action: "user.updated", resourceType: "user", resourceID: userID.postgresText) {
            let fields = try Validate.mask(request.updateMask, allowed: ["display_name", "time_zone"])
            let displayName = try Validate.optionalText(request.displayName, field: "display_name")
            let timeZone = try Validate.timeZone(request.timeZone, field: "time_zone")
            let record = try await store.updateProfile(
                userID, fields: fields, displayName: displayName, timeZone: timeZone, origin: origin, deadline: context.deadline)
            guard let record else { throw Self.notFound }
            return Self.user(record)
        }
    }

    public func deleteAccount(request: DeleteAccountRequest, context: ServerContext) async throws -> DeleteAccountResponse {
        let origin = AuditOrigin(context)
        let userID = try context.actingUser()
        let revoked = try await store.deleteAccount(userID, origin: origin, deadline: context.deadline)
        guard let revoked else { throw Self.notFound }
        authenticator.forgetDeleted(userID: userID.postgresText)
        return DeleteAccountResponse.with { $0.sessionsRevoked = Int32(clamping: revoked) }
    }

    public func getUser(request: GetUserRequest, context: ServerContext) async throws -> User {
        let userID = try Validate.uuid(request.userID, field: "user_id")
        guard let record = try await store.user(userID, deadline: context.deadline) else { throw Self.notFound }
        return Self.user(record)
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
        let rows = try await store.users(
            includeDeleted: request.includeDeleted, emailPattern: pattern, afterMicros: afterMicros, afterID: afterID, limit: size + 1,
            deadline: context.deadline)
        let page = Array(rows.prefix(size))
        var response = ListUsersResponse()
        response.users = page.map { Self.user($0.user) }
        if rows.count > size, let last = page.last {
            response.nextPageToken = PageToken.encode([String(last.cursorMicros), last.user.id.postgresText])
        }
        return response
    }

    public func restoreUser(request: RestoreUserRequest, context: ServerContext) async throws -> User {
        let origin = AuditOrigin(context)
        let userID = try Validate.uuid(request.userID, field: "user_id")
        return try await trail.failures(origin, action: "user.restored", resourceType: "user", resourceID: userID.postgresText) {
            let record: UserRecord?
            do {
                record = try await store.restore(userID, origin: origin, deadline: context.deadline)
            } catch IdentityStore.Refusal.emailInUse {
                throw RPCError(
                    code: .alreadyExists, message: "the account's email now belongs to another active account",
                    details: ErrorDetails(reason: "EMAIL_IN_USE", fields: ["field": "user_id"]))
            }
            guard let record else { throw Self.notFound }
            return Self.user(record)
        }
    }

    // MARK: - Messages

    static func user(_ record: UserRecord) -> User {
        var user = User()
        user.id = record.id.postgresText
        user.email = record.email
        user.emailVerified = record.emailVerified
        user.displayName = record.displayName ?? ""
        user.pictureURL = record.pictureURL ?? ""
        user.timeZone = record.timeZone ?? ""
        user.provider = record.provider ?? ""
        user.active = record.isActive
        user.createdAt = Google_Protobuf_Timestamp(record.createdAt)
        user.updatedAt = Google_Protobuf_Timestamp(record.updatedAt)
        if let deleted = record.deletedAt { user.deletedAt = Google_Protobuf_Timestamp(deleted) }
        return user
    }
}
