@_exported import PassionAPI
@_exported import PassionRPC
@_exported import PassionTLS
@_exported import PassionWire
@_exported import SwiftProtobuf

/// Entry point for applications calling a passion server: one import gives the connection
/// pool, the generated service clients and the message types.
public enum PassionClient {
    /// A pool of TLS connections to `host:port` that verifies the server certificate against
    /// `trustRootsPath` (the system's roots when nil) and the host name.
    ///
    /// Connections open lazily on the first call. Give `certificatePath`/`privateKeyPath` to
    /// authenticate with a client certificate (mTLS).
    public static func connect(
        host: String = "127.0.0.1", port: Int = 7443, trustRootsPath: String? = nil,
        certificatePath: String? = nil, privateKeyPath: String? = nil, connections: Int = 1,
        minimumTLSVersion: TLSConfiguration.MinimumVersion = .tls13
    ) -> RPCClient {
        let tls = TLSConfiguration.client(
            serverHostname: host, trustRootsPath: trustRootsPath, certificateChainPath: certificatePath,
            privateKeyPath: privateKeyPath, minimumVersion: minimumTLSVersion)
        var configuration = RPCClientConfiguration(connection: ClientConnectionConfiguration(host: host, port: port, tls: tls))
        configuration.connections = connections
        return RPCClient(configuration: configuration)
    }
}

extension RPCClientTransport {
    /// `passion.v1.Diagnostics` over this transport.
    public var diagnostics: Diagnostics.Client { Diagnostics.Client(transport: self) }
    /// `passion.v1.Health` over this transport.
    public var health: Health.Client { Health.Client(transport: self) }
    /// `passion.v1.Introspection` over this transport.
    public var introspection: Introspection.Client { Introspection.Client(transport: self) }
    /// `passion.v1.Auth` over this transport.
    public var auth: Auth.Client { Auth.Client(transport: self) }
    /// `passion.v1.Users` over this transport.
    public var users: Users.Client { Users.Client(transport: self) }
    /// `passion.v1.Settings` over this transport (`settings` is a connection's negotiated HELLO).
    public var userSettings: Settings.Client { Settings.Client(transport: self) }
    /// `passion.v1.Audit` over this transport.
    public var audit: Audit.Client { Audit.Client(transport: self) }
    /// `passion.v1.Progress` over this transport.
    public var progress: PassionAPI.Progress.Client { PassionAPI.Progress.Client(transport: self) }
    /// `passion.v1.Achievements` over this transport.
    public var achievements: Achievements.Client { Achievements.Client(transport: self) }
    /// `passion.v1.ProgressAdmin` over this transport.
    public var progressAdmin: ProgressAdmin.Client { ProgressAdmin.Client(transport: self) }
    /// `passion.v1.Goals` over this transport.
    public var goals: Goals.Client { Goals.Client(transport: self) }
    /// `passion.v1.Habits` over this transport.
    public var habits: Habits.Client { Habits.Client(transport: self) }
    /// `passion.v1.Quests` over this transport.
    public var quests: Quests.Client { Quests.Client(transport: self) }
    /// `passion.v1.FocusSessions` over this transport.
    public var focusSessions: FocusSessions.Client { FocusSessions.Client(transport: self) }
    /// `passion.v1.Maintenance` over this transport.
    public var maintenance: Maintenance.Client { Maintenance.Client(transport: self) }
}

extension CallOptions {
    /// Calls as a signed-in user: `authorization: Bearer <token>`.
    public static func session(_ token: String) -> CallOptions {
        CallOptions(metadata: ["authorization": "Bearer \(token)"])
    }

    /// Calls as an internal service, optionally acting for a user.
    public static func service(key: String, asUser userID: String? = nil) -> CallOptions {
        var metadata: Metadata = ["authorization": "ServiceKey \(key)"]
        if let userID { metadata.add("as-user", userID) }
        return CallOptions(metadata: metadata)
    }
}
