/// How one side of a connection uses TLS. Build it with `.server(...)` or `.client(...)`.
public struct TLSConfiguration: Sendable, Equatable {
    /// Lowest protocol version accepted.
    public enum MinimumVersion: Sendable, Equatable {
        /// TLS 1.3 only: the default.
        case tls13
        /// TLS 1.2 and 1.3, for peers that cannot do 1.3.
        case tls12
    }

    /// Which side of the handshake this is.
    public enum Role: Sendable, Equatable {
        case server
        case client
    }

    public var role: Role
    /// PEM certificate chain presented to the peer (required for servers, for mTLS clients).
    public var certificateChainPath: String?
    /// PEM private key of `certificateChainPath`.
    public var privateKeyPath: String?
    /// PEM file of CAs that sign acceptable peer certificates. For a client, nil means the
    /// system's trust store; for a server, setting it turns on client-certificate checks (mTLS).
    public var trustRootsPath: String?
    /// Whether the peer's certificate is verified. Clients default to true; turning it off is
    /// for tests only.
    public var verifyPeer: Bool
    /// The host name (or IP address) the server's certificate must match; clients only.
    public var serverHostname: String?
    public var minimumVersion: MinimumVersion = .tls13
    /// Application protocols offered (client) or accepted (server) through ALPN.
    public var applicationProtocols: [String] = ["passion/1"]

    /// A server presenting `certificateChainPath`; with `clientCAPath` it requires client
    /// certificates signed by those CAs.
    public static func server(
        certificateChainPath: String, privateKeyPath: String, clientCAPath: String? = nil,
        minimumVersion: MinimumVersion = .tls13
    ) -> TLSConfiguration {
        TLSConfiguration(
            role: .server, certificateChainPath: certificateChainPath, privateKeyPath: privateKeyPath,
            trustRootsPath: clientCAPath, verifyPeer: clientCAPath != nil, serverHostname: nil,
            minimumVersion: minimumVersion)
    }

    /// A client that verifies the server against `trustRootsPath` (system roots when nil) and
    /// `serverHostname`; with a certificate and key it can authenticate itself (mTLS).
    public static func client(
        serverHostname: String?, trustRootsPath: String? = nil, certificateChainPath: String? = nil,
        privateKeyPath: String? = nil, minimumVersion: MinimumVersion = .tls13
    ) -> TLSConfiguration {
        TLSConfiguration(
            role: .client, certificateChainPath: certificateChainPath, privateKeyPath: privateKeyPath,
            trustRootsPath: trustRootsPath, verifyPeer: true, serverHostname: serverHostname,
            minimumVersion: minimumVersion)
    }
}
