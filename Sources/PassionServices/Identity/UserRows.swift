import Foundation
import PassionServerAPI
import PassionStore
import SwiftProtobuf

/// The columns every User message is built from.
enum UserRows {
    static let columns = """
        id, email, email_verified, display_name, profile_picture_url, timezone, oauth_provider, is_active, created_at, updated_at, deleted_at
        """

    static func user(_ row: Row) throws -> User {
        var user = User()
        user.id = try row.require("id", as: UUID.self).postgresText
        user.email = try row.require("email", as: String.self)
        user.emailVerified = try row.require("email_verified", as: Bool.self)
        user.displayName = try row.decode("display_name", as: String.self) ?? ""
        user.pictureURL = try row.decode("profile_picture_url", as: String.self) ?? ""
        user.timeZone = try row.decode("timezone", as: String.self) ?? ""
        user.provider = try row.decode("oauth_provider", as: String.self) ?? ""
        user.active = try row.require("is_active", as: Bool.self)
        user.createdAt = Google_Protobuf_Timestamp(try row.require("created_at", as: Date.self))
        user.updatedAt = Google_Protobuf_Timestamp(try row.require("updated_at", as: Date.self))
        if let deleted = try row.decode("deleted_at", as: Date.self) { user.deletedAt = Google_Protobuf_Timestamp(deleted) }
        return user
    }
}
