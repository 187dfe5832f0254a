import Foundation
import PassionClient
import PassionIdentity
import PassionStore
import PassionTestSupport
import SwiftProtobuf
import Testing
import PassionRPCServer

@Suite("Bad input: INVALID_ARGUMENT naming the field, a failure row, nothing changed")
struct ValidationTests {
    /// Expects INVALID_ARGUMENT naming `field`, with the identity tables unchanged.
    private func rejects<T>(
        _ harness: ServiceHarness, field: String, sourceLocation: SourceLocation = #_sourceLocation, _ call: () async throws -> T
    ) async throws {
        let before = try await harness.snapshot()
        let error = await expectRPCError(.invalidArgument, sourceLocation: sourceLocation, call)
        #expect(error?.details?.fields["field"] == field, "got \(String(describing: error))", sourceLocation: sourceLocation)
        #expect(try await harness.snapshot() == before, sourceLocation: sourceLocation)
    }

    @Test("SignIn: provider, subject, email, picture URL and time zone")
    func signIn() async throws {
        try await ServiceHarness.with { harness in
            func attempt(_ change: @escaping @Sendable (inout VerifiedIdentity) -> Void) -> () async throws -> SignInResponse {
                {
                    try await harness.connection.auth.signIn(options: ServiceHarness.service("gateway")) { request in
                        var identity = VerifiedIdentity.with {
                            $0.provider = .google
                            $0.providerUserID = "valid-subject"
                            $0.email = "valid@example.com"
                        }
                        change(&identity)
                        request.identity = identity
                    }
                }
            }
            try await rejects(harness, field: "credential") {
                try await harness.connection.auth.signIn(SignInRequest(), options: ServiceHarness.service("gateway"))
            }
            try await rejects(harness, field: "identity.provider", attempt { $0.provider = .unspecified })
            try await rejects(harness, field: "identity.provider_user_id", attempt { $0.providerUserID = "  " })
            try await rejects(harness, field: "identity.provider_user_id", attempt { $0.providerUserID = String(repeating: "x", count: 256) })
            for email in ["", "no-at-sign", "two@@example.com", "spaces in@example.com", "nodot@example", String(repeating: "a", count: 250) + "@example.com"] {
                try await rejects(harness, field: "identity.email", attempt { $0.email = email })
            }
            try await rejects(harness, field: "identity.picture_url", attempt { $0.pictureURL = "javascript:alert(1)" })
            try await rejects(harness, field: "identity.display_name", attempt { $0.displayName = String(repeating: "n", count: 256) })
            for zone in ["Mars/Olympus_Mons", "PST", "GMT+5", "Europe/Berlin; DROP TABLE users"] {
                try await rejects(harness, field: "identity.time_zone", attempt { $0.timeZone = zone })
            }
            #expect(try await harness.count("SELECT count(*) AS n FROM users") == 0)
            #expect(try await harness.auditRows(action: "user.signin").allSatisfy { try $0.require("status", as: String.self) == "failure" })
        }
    }

    @Test("UpdateProfile: mask, display name, time zone")
    func profile() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let users = harness.connection.users
            try await rejects(harness, field: "update_mask") {
                try await users.updateProfile(options: .session(user.token)) { $0.displayName = "x" }
            }
            try await rejects(harness, field: "update_mask") {
                try await users.updateProfile(options: .session(user.token)) { $0.updateMask.paths = ["email"] }
            }
            try await rejects(harness, field: "display_name") {
                try await users.updateProfile(options: .session(user.token)) {
                    $0.displayName = String(repeating: "é", count: 256)
                    $0.updateMask.paths = ["display_name"]
                }
            }
            try await rejects(harness, field: "time_zone") {
                try await users.updateProfile(options: .session(user.token)) {
                    $0.timeZone = "Europe/Atlantis"
                    $0.updateMask.paths = ["time_zone"]
                }
            }
            let failures = try await harness.auditRows(action: "user.updated")
            #expect(failures.count == 4)
            #expect(try failures.allSatisfy { try $0.require("status", as: String.self) == "failure" })
            // The valid extremes pass: UTC+14 and UTC−12 zones, 255 characters.
            for zone in ["Pacific/Kiritimati", "Etc/GMT+12", "America/Argentina/Buenos_Aires"] {
                let updated = try await users.updateProfile(options: .session(user.token)) {
                    $0.timeZone = zone
                    $0.displayName = String(repeating: "ü", count: 255)
                    $0.updateMask.paths = ["*"]
                }
                #expect(updated.timeZone == zone)
            }
        }
    }

    @Test("Settings: defaults on first use; theme, frequency, language, metadata and mask validated")
    func settings() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let settings = harness.connection.userSettings
            let defaults = try await settings.get(GetSettingsRequest(), options: .session(user.token))
            #expect(defaults.theme == "light" && defaults.emailDigestFrequency == "weekly" && defaults.language == "en")
            #expect(defaults.metadata.fields.isEmpty)
            func update(_ change: @escaping @Sendable (inout UpdateSettingsRequest) -> Void) -> () async throws -> UserSettings {
                { try await settings.update(options: .session(user.token), change) }
            }
            try await rejects(harness, field: "update_mask", update { $0.settings.theme = "dark" })
            try await rejects(harness, field: "update_mask", update { $0.updateMask.paths = ["theme", "colour"] })
            try await rejects(harness, field: "settings.theme", update {
                $0.settings.theme = "purple"
                $0.updateMask.paths = ["theme"]
            })
            try await rejects(harness, field: "settings.email_digest_frequency", update {
                $0.settings.emailDigestFrequency = "hourly"
                $0.updateMask.paths = ["email_digest_frequency"]
            })
            for language in ["english", "EN", "en_US", "", "zh-Hant-TW-x-long"] {
                try await rejects(harness, field: "settings.language", update {
                    $0.settings.language = language
                    $0.updateMask.paths = ["language"]
                })
            }
            try await rejects(harness, field: "settings.metadata", update {
                $0.settings.metadata.fields["blob"] = Google_Protobuf_Value(stringValue: String(repeating: "x", count: 17_000))
                $0.updateMask.paths = ["metadata"]
            })
            // A valid masked update changes only the masked fields.
            let updated = try await settings.update(options: .session(user.token)) {
                $0.settings.theme = "dark"
                $0.settings.language = "pt-BR"
                $0.settings.emailDigestFrequency = "hourly"  // not in the mask: ignored, not validated
                $0.settings.metadata.fields["streakGoal"] = Google_Protobuf_Value(numberValue: 30)
                $0.updateMask.paths = ["theme", "language", "metadata"]
            }
            #expect(updated.theme == "dark" && updated.language == "pt-BR" && updated.emailDigestFrequency == "weekly")
            #expect(updated.metadata.fields["streakGoal"]?.numberValue == 30)
            let again = try await settings.get(GetSettingsRequest(), options: .session(user.token))
            #expect(again == updated)
            #expect(try await harness.auditRows(action: "settings.created").count == 1)
            let updates = try await harness.auditRows(action: "settings.updated")
            #expect(try updates.filter { try $0.require("status", as: String.self) == "failure" }.count == 10)
            #expect(try updates.filter { try $0.require("status", as: String.self) == "success" }.count == 1)
        }
    }

    @Test("admin calls: malformed ids and page tokens name their field")
    func adminInput() async throws {
        try await ServiceHarness.with { harness in
            let users = harness.connection.users
            let reader = ServiceHarness.service("reader")
            try await rejects(harness, field: "user_id") { try await users.getUser(options: reader) { $0.userID = "42" } }
            try await rejects(harness, field: "page_token") { try await users.listUsers(options: reader) { $0.pageToken = "!!" } }
            try await rejects(harness, field: "page_size") { try await users.listUsers(options: reader) { $0.pageSize = 501 } }
            try await rejects(harness, field: "until") {
                try await harness.connection.audit.query(options: ServiceHarness.service("admin")) {
                    $0.since = Google_Protobuf_Timestamp(date: Date())
                    $0.until = Google_Protobuf_Timestamp(date: Date(timeIntervalSinceNow: -60))
                }
            }
            await expectRPCError(.notFound) { try await users.getUser(options: reader) { $0.userID = UUID().uuidString } }
        }
    }
}
