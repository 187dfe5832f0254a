import Foundation
import PassionClient
import PassionIdentity
import PassionStore
import PassionTestSupport
import Testing
import PassionRPCServer

@Suite("Users administration")
struct UsersTests {
    @Test("ListUsers pages oldest first without gaps; email_prefix is a prefix, not a pattern; deleted users on request")
    func listUsers() async throws {
        try await ServiceHarness.with { harness in
            var created: [String] = []
            for index in 0..<9 { created.append(try await harness.signIn("member\(index)@example.com").id) }
            _ = try await harness.signIn("other_1@example.com")
            let deleted = try await harness.signIn("member_gone@example.com")
            _ = try await harness.connection.users.deleteAccount(DeleteAccountRequest(), options: .session(deleted.token))
            let reader = ServiceHarness.service("reader")
            var listed: [String] = []
            var token = ""
            repeat {
                let page = try await harness.connection.users.listUsers(options: reader) {
                    $0.pageSize = 4
                    $0.pageToken = token
                    $0.emailPrefix = "Member"
                }
                listed += page.users.map(\.id)
                token = page.nextPageToken
            } while !token.isEmpty
            #expect(listed == created)
            // "_" in the prefix matches only "_".
            let underscore = try await harness.connection.users.listUsers(options: reader) {
                $0.emailPrefix = "member_"
                $0.includeDeleted = true
            }
            #expect(underscore.users.map(\.id) == [deleted.id])
            #expect(underscore.users.first?.active == false)
            #expect(underscore.users.first?.hasDeletedAt == true)
            let visible = try await harness.connection.users.listUsers(options: reader) { $0.emailPrefix = "member_" }
            #expect(visible.users.isEmpty)
            // A deleted user is still there for admins.
            let fetched = try await harness.connection.users.getUser(options: reader) { $0.userID = deleted.id }
            #expect(!fetched.active)
        }
    }
}
