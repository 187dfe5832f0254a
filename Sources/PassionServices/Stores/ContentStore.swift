import Foundation
import PassionIdentity
import PassionRPCServer
import PassionStore

/// The content domain's SQL: goals, habits and completions, quests, focus sessions and the
/// daily jobs, each statement answering typed records. One file per resource
/// (ContentStore+Goals.swift, ...); the services validate and map records to messages.
struct ContentStore: Sendable {
    let pool: PostgresPool
}

extension AuditOrigin {
    /// The audit arguments every content function takes after its own: principal, address, agent.
    var sqlArguments: (principal: String, ip: InetAddress?, userAgent: String?) {
        (principal.description, ipAddress.map { InetAddress($0) }, userAgent)
    }
}
