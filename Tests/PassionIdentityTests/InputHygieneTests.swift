import Foundation
import PassionClient
import PassionIdentity
import PassionStore
import PassionTestSupport
import SwiftProtobuf
import Testing
import PassionRPCServer

/// Input the outside world controls never reaches a trap, and never changes meaning on its way
/// to the database.
@Suite("Input hygiene")
struct InputHygieneTests {
    @Test("timestamps far outside the calendar are INVALID_ARGUMENT naming the field; the server serves on")
    func timestamps() async throws {
        try await ServiceHarness.with { harness in
            let admin = ServiceHarness.service("admin")
            for (field, timestamp) in [
                ("since", Google_Protobuf_Timestamp(seconds: .max, nanos: 0)), ("until", Google_Protobuf_Timestamp(seconds: .min, nanos: 0)),
                ("since", Google_Protobuf_Timestamp(seconds: 0, nanos: -1)),
            ] {
                let error = await expectRPCError(.invalidArgument) {
                    try await harness.connection.audit.query(options: admin) {
                        if field == "since" { $0.since = timestamp } else { $0.until = timestamp }
                    }
                }
                #expect(error?.details?.fields["field"] == field)
            }
            // Years 1 and 9999 are fine.
            _ = try await harness.connection.audit.query(options: admin) {
                $0.since = Google_Protobuf_Timestamp(seconds: -62_135_596_800, nanos: 0)
                $0.until = Google_Protobuf_Timestamp(seconds: 253_402_300_799, nanos: 999_999_999)
            }
        }
    }

    @Test("a NUL in an id or a text is refused, never cut short into another value")
    func nulBytes() async throws {
        try await ServiceHarness.with { harness in
            let user = try await harness.signIn()
            let before = try await harness.snapshot() + "\(try await harness.count("SELECT count(*) AS n FROM points_ledger"))"
            let award = await expectRPCError(.invalidArgument) {
                try await harness.connection.progress.awardXP(options: ServiceHarness.service("progress")) {
                    $0.userID = user.id + "\u{0}"
                    $0.points = 5
                    $0.reason = "grant"
                    $0.idempotencyKey = "nul"
                }
            }
            #expect(award?.details?.fields["field"] == "user_id")
            let asUser = await expectRPCError(.invalidArgument) {
                try await harness.connection.users.me(MeRequest(), options: ServiceHarness.service("everything", asUser: user.id + "\u{0}x"))
            }
            #expect(asUser?.details?.reason == "AS_USER_MALFORMED")
            await expectRPCError(.invalidArgument) {
                try await harness.connection.goals.create(options: .session(user.token)) { $0.goal.title = "a\u{0}b" }
            }
            #expect(try await harness.count("SELECT count(*) AS n FROM goals") == 0)
            #expect(try await harness.snapshot() + "\(try await harness.count("SELECT count(*) AS n FROM points_ledger"))" == before)
        }
    }
}
