import COpenSSL

#if canImport(Glibc)
import Glibc
#endif

/// An OpenSSL `SSL_CTX` configured from a `TLSConfiguration`; makes one `SSL` per connection.
///
/// `@unchecked Sendable`: the context is immutable after `init`, and OpenSSL documents
/// `SSL_CTX` as safe to share between threads once configured.
public final class TLSContext: @unchecked Sendable {
    let context: OpaquePointer
    public let configuration: TLSConfiguration

    public init(_ configuration: TLSConfiguration) throws {
        self.configuration = configuration
        ERR_clear_error()
        let method = configuration.role == .server ? TLS_server_method() : TLS_client_method()
        guard let context = SSL_CTX_new(method) else {
            throw TLSError.fromQueue("cannot create TLS context")
        }
        self.context = context
        let minimum = configuration.minimumVersion == .tls13 ? TLS1_3_VERSION : TLS1_2_VERSION
        guard passion_ssl_ctx_set_min_proto_version(context, minimum) == 1 else {
            throw TLSError.fromQueue("cannot set the minimum TLS version")
        }
        // Compression in TLS enables CRIME; renegotiation is an attack surface we do not need.
        SSL_CTX_set_options(context, passion_ssl_op_no_compression() | passion_ssl_op_no_renegotiation())
        // Mozilla's "intermediate" profile: AEAD suites with forward secrecy for TLS 1.2 (TLS 1.3
        // has only such suites), and the groups every current client has.
        guard SSL_CTX_set_cipher_list(context, Self.tls12Ciphers) == 1,
            passion_ssl_ctx_set1_groups_list(context, Self.groups) == 1
        else {
            throw TLSError.fromQueue("cannot restrict TLS ciphers and groups")
        }
        try loadIdentity()
        try configureVerification()
        try configureALPN()
    }

    deinit {
        SSL_CTX_free(context)
    }

    /// TLS 1.2 suites (Mozilla intermediate, without the DHE ones).
    public static let tls12Ciphers = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    /// Key exchange groups, in preference order.
    public static let groups = "X25519:P-256:P-384"

    private func loadIdentity() throws {
        guard let chain = configuration.certificateChainPath else {
            if configuration.role == .server { throw TLSError("a server needs a certificate and key") }
            return
        }
        guard let key = configuration.privateKeyPath else {
            throw TLSError("certificate \(chain) given without its private key")
        }
        guard SSL_CTX_use_certificate_chain_file(context, chain) == 1 else {
            throw TLSError.fromQueue("cannot load certificate chain \(chain)")
        }
        guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1 else {
            throw TLSError.fromQueue("cannot load private key \(key)")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw TLSError.fromQueue("private key \(key) does not match certificate \(chain)")
        }
    }

    private func configureVerification() throws {
        switch configuration.role {
        case .client:
            if let roots = configuration.trustRootsPath {
                guard SSL_CTX_load_verify_locations(context, roots, nil) == 1 else {
                    throw TLSError.fromQueue("cannot load trusted CAs from \(roots)")
                }
            } else {
                SSL_CTX_set_default_verify_paths(context)
            }
            SSL_CTX_set_verify(context, configuration.verifyPeer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nil)
        case .server:
            guard configuration.verifyPeer, let roots = configuration.trustRootsPath else {
                SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
                return
            }
            guard SSL_CTX_load_verify_locations(context, roots, nil) == 1 else {
                throw TLSError.fromQueue("cannot load client CAs from \(roots)")
            }
            if let names = passion_load_client_ca_file(roots) {
                SSL_CTX_set_client_CA_list(context, names)
            }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }
    }

    private func configureALPN() throws {
        switch configuration.role {
        case .client:
            var wire: [UInt8] = []
            for name in configuration.applicationProtocols {
                wire.append(UInt8(name.utf8.count))
                wire.append(contentsOf: name.utf8)
            }
            // SSL_CTX_set_alpn_protos returns 0 on success.
            guard wire.isEmpty || SSL_CTX_set_alpn_protos(context, wire, UInt32(wire.count)) == 0 else {
                throw TLSError.fromQueue("cannot set ALPN protocols")
            }
        case .server:
            SSL_CTX_set_alpn_select_cb(context, selectPassionProtocol, nil)
        }
    }

    /// A new per-connection `SSL` for `hostname` (clients: SNI and certificate name check).
    func makeConnection() throws -> OpaquePointer {
        ERR_clear_error()
        guard let ssl = SSL_new(context) else { throw TLSError.fromQueue("cannot create TLS session") }
        if configuration.role == .client, let host = configuration.serverHostname {
            let param = SSL_get0_param(ssl)
            if Self.isIPAddress(host) {
                guard X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1 else {
                    SSL_free(ssl)
                    throw TLSError.fromQueue("invalid IP address \(host)")
                }
            } else {
                // SNI goes out for names (never for addresses, which RFC 6066 forbids).
                _ = passion_ssl_set_tlsext_host_name(ssl, host)
                guard SSL_set1_host(ssl, host) == 1 else {
                    SSL_free(ssl)
                    throw TLSError.fromQueue("invalid host name \(host)")
                }
            }
        }
        return ssl
    }

    /// Whether `host` is a literal IPv4 or IPv6 address.
    static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}

/// Server ALPN selection: accept `passion/1` only. A client that offers ALPN without it gets a
/// fatal `no_application_protocol` alert; a client that offers no ALPN at all is accepted.
private func selectPassionProtocol(
    _ ssl: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
    _ outLength: UnsafeMutablePointer<UInt8>?, _ input: UnsafePointer<UInt8>?, _ inputLength: UInt32,
    _ argument: UnsafeMutableRawPointer?
) -> Int32 {
    guard let input, let out, let outLength else { return SSL_TLSEXT_ERR_ALERT_FATAL }
    let wanted = Array("passion/1".utf8)
    var index = 0
    let count = Int(inputLength)
    while index < count {
        let length = Int(input[index])
        let start = index + 1
        guard start + length <= count else { break }
        if length == wanted.count, (0..<length).allSatisfy({ input[start + $0] == wanted[$0] }) {
            out.pointee = input + start
            outLength.pointee = UInt8(length)
            return SSL_TLSEXT_ERR_OK
        }
        index = start + length
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL
}
