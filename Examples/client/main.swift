// The client library in one program: README's "Using the client library" quotes this file, and
// a test checks that every snippet there appears here verbatim, so the README cannot rot.
//   swift run passion-client-example [SERVICE_KEY_FILE]   (against `tools/server` on this machine)
import Foundation
import PassionClient

@main
struct ClientExample {
    static func main() async throws {
        let keyFile = CommandLine.arguments.dropFirst().first ?? ".passion/dev-service-key"
        let serviceKey = try String(contentsOfFile: keyFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)

        // MARK: connect
        // A pool of TLS connections; they open on the first call and reconnect by themselves.
        let client = PassionClient.connect(
            host: "127.0.0.1", port: 7443, trustRootsPath: ".passion/tls/ca.pem")

        // MARK: sign-in
        // A sign-in gateway (a service) trades a verified identity for a session.
        let session = try await client.auth.signIn(options: .service(key: serviceKey)) {
            $0.identity = VerifiedIdentity.with {
                $0.provider = .google
                $0.providerUserID = "example-subject-1"
                $0.email = "example@example.com"
                $0.emailVerified = true
            }
        }
        let userID = session.user.id

        // MARK: award
        // A game server awards XP for the user, with a deadline; the key makes retries safe.
        var options = CallOptions.service(key: serviceKey, asUser: userID)
        options.timeout = .seconds(2)
        let reward = try await client.progress.awardXP(options: options) {
            $0.userID = userID
            $0.points = 50
            $0.reason = "grant"
            $0.idempotencyKey = "example-award-1"
        }
        print("level \(reward.progress.level), \(reward.progress.totalXp) XP, replayed: \(reward.replayed)")

        // MARK: errors
        // Failures are RPCError: a status code, a message for people, and a reason to switch on.
        do {
            _ = try await client.progress.spendCoins(options: options) {
                $0.userID = userID
                $0.price = 1_000_000
                $0.idempotencyKey = "example-spend-1"
            }
        } catch let error as RPCError where error.details?.reason == "INSUFFICIENT_FUNDS" {
            print("not enough coins: balance \(error.details?.fields["balance"] ?? "?")")
        } catch let error as RPCError {
            print("spend failed: \(error)")  // e.g. "FAILED_PRECONDITION: … [REASON key=value]"
        }

        // MARK: live-events
        // Live events that survive reconnects: no gap, no repeat; cancelling ends the loop quietly.
        let listener = Task {
            for try await update in client.progress.events(options: .session(session.sessionToken)) {
                switch update {
                case .live(let lastEventID): print("live after event \(lastEventID)")
                case .event(let event): print("event \(event.id): \(event.type)")
                case .interrupted(let error): print("reconnecting: \(error)")
                }
            }
        }
        try await Task.sleep(for: .seconds(1))
        listener.cancel()

        // MARK: close
        await client.close()
    }
}
