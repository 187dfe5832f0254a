import Foundation
import Logging
import PassionRPCServer
import PassionWire
import PassionStore

/// One row of the audit trail.
public struct AuditRecord: Sendable {
    public enum Status: String, Sendable {
        case success
        case failure
    }

    /// The user the action concerned.
    public var userID: UUID?
    /// Dotted, as in the seed: `user.signin`, `settings.updated`, `goal.created`.
    public var action: String
    public var resourceType: String?
    public var resourceID: String?
    public var status: Status
    public var details: [String: String]
    /// `Principal.description` of who acted.
    public var principal: String
    public var ipAddress: String?
    public var userAgent: String?

    public init(
        userID: UUID?, action: String, resourceType: String? = nil, resourceID: String? = nil, status: Status = .success,
        details: [String: String] = [:], principal: String, ipAddress: String? = nil, userAgent: String? = nil
    ) {
        self.userID = userID
        self.action = action
        self.resourceType = resourceType
        self.resourceID = resourceID
        self.status = status
        self.details = details
        self.principal = principal
        self.ipAddress = ipAddress
        self.userAgent = userAgent
    }

    var detailsJSON: JSONB? {
        guard !details.isEmpty else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(details)).map { JSONB(json: String(decoding: $0, as: UTF8.self)) }
    }
}

extension PostgresConnection {
    /// Writes `record` in the caller's transaction, so the trail and the change commit together.
    /// A user id that names no user (a service acting for a stranger) is recorded as NULL.
    public func insertAudit(_ record: AuditRecord) async throws {
        try await query("""
            INSERT INTO audit_logs (user_id, action, resource_type, resource_id, details, ip_address, user_agent, status, principal)
            VALUES ((SELECT id FROM users WHERE id = \(record.userID)), \(record.action), \(record.resourceType),
                    \(record.resourceID), \(record.detailsJSON)::jsonb, \(record.ipAddress.map { InetAddress($0) })::inet,
                    \(record.userAgent), \(record.status.rawValue), \(record.principal))
            """)
    }
}

extension CallCredentials {
    /// The client's address without its port.
    public var peerHost: String { AuditOrigin.host(ofPeer: peer) }
}

/// Where a call came from, for audit rows: who, from which address, with which client.
public struct AuditOrigin: Sendable {
    public var principal: Principal
    public var ipAddress: String?
    public var userAgent: String?

    public init(principal: Principal, peer: String, metadata: Metadata) {
        self.principal = principal
        let host = Self.host(ofPeer: peer)
        // Only a parseable address goes into the inet column; "unknown" (tests, pipes) does not.
        self.ipAddress = Self.isAddress(host) ? host : nil
        self.userAgent = metadata["user-agent"].map { String($0.prefix(500)) }
    }

    public init(_ context: ServerContext) {
        self.init(principal: context.principal, peer: context.peer, metadata: context.requestMetadata)
    }

    /// `192.0.2.1:5000` → `192.0.2.1`, `::1:5000` → `::1`: the port is always last.
    static func host(ofPeer peer: String) -> String {
        guard let colon = peer.lastIndex(of: ":") else { return peer }
        let host = String(peer[..<colon])
        return host.isEmpty ? peer : host
    }

    static func isAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// An audit row of this origin; the user defaults to the principal's.
    public func record(
        _ action: String, resourceType: String? = nil, resourceID: String? = nil, status: AuditRecord.Status = .success,
        userID: UUID? = nil, details: [String: String] = [:]
    ) -> AuditRecord {
        AuditRecord(
            userID: userID ?? principal.userID.flatMap { try? UUID(postgresText: $0) }, action: action, resourceType: resourceType,
            resourceID: resourceID, status: status, details: details, principal: principal.description, ipAddress: ipAddress,
            userAgent: userAgent)
    }
}

/// Writes audit rows outside a call's transaction: for attempts that failed, whose own
/// transaction rolled back.
public struct AuditTrail: Sendable {
    public let pool: PostgresPool
    private let logger: Logger

    public init(pool: PostgresPool, logger: Logger) {
        self.pool = pool
        self.logger = logger
    }

    /// Records a failed attempt; a database that cannot take it is logged, never thrown: the
    /// caller already has the error that matters.
    public func recordFailure(_ record: AuditRecord) async {
        var failed = record
        failed.status = .failure
        let row = failed
        do {
            try await pool.withConnection { try await $0.insertAudit(row) }
        } catch {
            logger.warning("audit row not written", metadata: ["action": "\(record.action)", "error": "\(error)"])
        }
    }

    /// Runs `body`; when it fails with the caller's fault (invalid input, not found, denied,
    /// conflicts), records `action` with status failure and the error's reason, then rethrows.
    public func failures<T: Sendable>(
        _ origin: AuditOrigin, action: String, resourceType: String, resourceID: String? = nil,
        _ body: () async throws -> T
    ) async throws -> T {
        do {
            return try await body()
        } catch {
            let status = RPCError(converting: error)
            if Self.auditedFailures.contains(status.code) {
                var details = ["code": status.code.name]
                if let reason = status.details?.reason { details["reason"] = reason }
                if let field = status.details?.fields["field"] { details["field"] = field }
                await recordFailure(origin.record(action, resourceType: resourceType, resourceID: resourceID, status: .failure, details: details))
            }
            throw error
        }
    }

    static let auditedFailures: Set<StatusCode> = [
        .invalidArgument, .notFound, .alreadyExists, .permissionDenied, .failedPrecondition, .outOfRange, .unauthenticated,
    ]
}
