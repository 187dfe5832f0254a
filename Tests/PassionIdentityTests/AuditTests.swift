import Foundation
import PassionClient
import PassionIdentity
import PassionStore
import PassionTestSupport
import SwiftProtobuf
import Testing
import PassionRPCServer

@Suite("Audit trail: recent activity and admin queries")
struct AuditTests {
    @Test("RecentActivity groups the caller's own actions, newest first (the seed's Pattern 4)")
    func recentActivity() async throws {
        try await ServiceHarness.with { harness in
            let a = try await harness.signIn()
            let b = try await harness.signIn()
            for theme in ["dark", "light", "system"] {
                _ = try await harness.connection.userSettings.update(options: .session(a.token)) {
                    $0.settings.theme = theme
                    $0.updateMask.paths = ["theme"]
                }
            }
            _ = try await harness.connection.users.updateProfile(options: .session(b.token)) {
                $0.displayName = "B"
                $0.updateMask.paths = ["display_name"]
            }
            let activity = try await harness.connection.audit.recentActivity(RecentActivityRequest(), options: .session(a.token))
            let counts = Dictionary(uniqueKeysWithValues: activity.activities.map { ($0.action, $0.count) })
            #expect(counts == ["user.signin": 1, "settings.created": 1, "settings.updated": 3])
            #expect(activity.activities.first?.action == "settings.updated")
            let lastAt = activity.activities.map { $0.lastAt.date }
            #expect(lastAt == lastAt.sorted(by: >))
            // Rows older than the window are not counted.
            _ = try await harness.query("UPDATE audit_logs SET created_at = now() - interval '10 days' WHERE action = 'user.signin'")
            let week = try await harness.connection.audit.recentActivity(RecentActivityRequest(), options: .session(a.token))
            #expect(!week.activities.contains { $0.action == "user.signin" })
            let month = try await harness.connection.audit.recentActivity(options: .session(a.token)) { $0.days = 30 }
            #expect(month.activities.contains { $0.action == "user.signin" })
            await expectRPCError(.invalidArgument) {
                try await harness.connection.audit.recentActivity(options: .session(a.token)) { $0.days = 91 }
            }
        }
    }

    @Test("admins query by user, action and time range, newest first, page by page without gaps or repeats")
    func adminQuery() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            for index in 0..<7 {
                _ = try await harness.connection.users.updateProfile(options: .session(user.token)) {
                    $0.displayName = "Name \(index)"
                    $0.updateMask.paths = ["display_name"]
                }
            }
            let admin = ServiceHarness.service("admin")
            var seen: [Int64] = []
            var token = ""
            repeat {
                let page = try await harness.connection.audit.query(options: admin) {
                    $0.userID = user.id
                    $0.action = "user.updated"
                    $0.pageSize = 3
                    $0.pageToken = token
                }
                #expect(page.entries.count <= 3)
                #expect(page.entries.allSatisfy { $0.userID == user.id && $0.action == "user.updated" && $0.status == "success" })
                #expect(page.entries.allSatisfy { $0.principal == "user:\(user.id)" && $0.ipAddress == "127.0.0.1" })
                seen += page.entries.map(\.id)
                token = page.nextPageToken
            } while !token.isEmpty
            #expect(seen.count == 7)
            #expect(seen == seen.sorted(by: >))
            let future = try await harness.connection.audit.query(options: admin) {
                $0.since = Google_Protobuf_Timestamp(date: Date(timeIntervalSinceNow: 3600))
            }
            #expect(future.entries.isEmpty)
            let all = try await harness.connection.audit.query(options: admin) {
                $0.since = Google_Protobuf_Timestamp(date: Date(timeIntervalSinceNow: -3600))
                $0.until = Google_Protobuf_Timestamp(date: Date(timeIntervalSinceNow: 60))
            }
            #expect(all.entries.count == 8)  // the sign-in and seven updates
        }
    }
}
