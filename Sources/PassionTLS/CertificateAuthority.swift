import COpenSSL

#if canImport(Glibc)
import Glibc
#endif

/// A PEM certificate with its PEM private key.
public struct PEMIdentity: Sendable, Equatable {
    public var certificatePEM: String
    public var privateKeyPEM: String

    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }
}

/// Issues P-256 certificates for development and tests: a self-signed CA and leaf
/// certificates it signs. Production deployments bring their own certificates.
public struct CertificateAuthority: Sendable {
    /// The CA's own certificate and key.
    public let identity: PEMIdentity

    /// A new self-signed CA valid for `days`.
    public static func create(commonName: String = "passion-rpc development CA", days: Int = 3650) throws
        -> CertificateAuthority
    {
        let key = try PrivateKey.generate()
        let certificate = try buildCertificate(
            commonName: commonName, publicKey: key, issuer: nil, issuerKey: key, notBeforeOffset: -3600,
            notAfterOffset: days * 86400,
            extensions: [
                (NID_basic_constraints, "critical,CA:TRUE,pathlen:0"),
                (NID_key_usage, "critical,keyCertSign,cRLSign"),
                (NID_subject_key_identifier, "hash"),
            ])
        defer { X509_free(certificate) }
        return CertificateAuthority(identity: PEMIdentity(
            certificatePEM: try pem(certificate), privateKeyPEM: try key.pem()))
    }

    /// Loads a CA from PEM text.
    public init(identity: PEMIdentity) {
        self.identity = identity
    }

    /// A leaf certificate for a server (`serverAuth`, names as SANs) or a client (`clientAuth`).
    ///
    /// `validFrom`/`validUntil` are seconds relative to now, so tests can make expired ones.
    public func issue(
        commonName: String, dnsNames: [String] = [], ipAddresses: [String] = [], uris: [String] = [], client: Bool = false,
        validFrom: Int = -3600, validUntil: Int = 825 * 86400
    ) throws -> PEMIdentity {
        let caKey = try PrivateKey(pem: identity.privateKeyPEM)
        let caCertificate = try Self.loadCertificate(identity.certificatePEM)
        defer { X509_free(caCertificate) }
        let key = try PrivateKey.generate()
        var extensions: [(Int32, String)] = [
            (NID_basic_constraints, "critical,CA:FALSE"),
            (NID_key_usage, "critical,digitalSignature,keyEncipherment"),
            (NID_ext_key_usage, client ? "clientAuth" : "serverAuth"),
        ]
        let names = dnsNames.map { "DNS:\($0)" } + ipAddresses.map { "IP:\($0)" } + uris.map { "URI:\($0)" }
        if !names.isEmpty { extensions.append((NID_subject_alt_name, names.joined(separator: ","))) }
        let certificate = try Self.buildCertificate(
            commonName: commonName, publicKey: key, issuer: caCertificate, issuerKey: caKey,
            notBeforeOffset: validFrom, notAfterOffset: validUntil, extensions: extensions)
        defer { X509_free(certificate) }
        return PEMIdentity(certificatePEM: try Self.pem(certificate), privateKeyPEM: try key.pem())
    }

    /// Seconds until a PEM certificate expires (negative once it has).
    public static func secondsUntilExpiry(certificatePEM: String) throws -> Int {
        let certificate = try loadCertificate(certificatePEM)
        defer { X509_free(certificate) }
        var ok: Int32 = 0
        let seconds = passion_x509_seconds_left(certificate, &ok)
        guard ok == 1 else { throw TLSError.fromQueue("cannot read the certificate's expiry") }
        return Int(seconds)
    }

    // MARK: - OpenSSL plumbing

    private static func buildCertificate(
        commonName: String, publicKey: PrivateKey, issuer: OpaquePointer?, issuerKey: PrivateKey,
        notBeforeOffset: Int, notAfterOffset: Int, extensions: [(Int32, String)]
    ) throws -> OpaquePointer {
        ERR_clear_error()
        guard let certificate = X509_new() else { throw TLSError.fromQueue("X509_new") }
        var serial = [UInt8](repeating: 0, count: 16)
        guard RAND_bytes(&serial, Int32(serial.count)) == 1 else {
            X509_free(certificate)
            throw TLSError.fromQueue("no randomness for a serial number")
        }
        serial[0] &= 0x7F  // positive
        let serialNumber = BN_bin2bn(serial, Int32(serial.count), nil)
        defer { BN_free(serialNumber) }
        var ok = X509_set_version(certificate, 2) == 1
        ok = ok && BN_to_ASN1_INTEGER(serialNumber, X509_get_serialNumber(certificate)) != nil
        ok = ok && X509_gmtime_adj(X509_getm_notBefore(certificate), notBeforeOffset) != nil
        ok = ok && X509_gmtime_adj(X509_getm_notAfter(certificate), notAfterOffset) != nil
        ok = ok && X509_set_pubkey(certificate, publicKey.key) == 1
        let subject = X509_get_subject_name(certificate)
        ok = ok && X509_NAME_add_entry_by_txt(subject, "CN", passion_mbstring_asc(), commonName, -1, -1, 0) == 1
        ok = ok && X509_set_issuer_name(certificate, issuer.map { X509_get_subject_name($0) } ?? subject) == 1
        var context = X509V3_CTX()
        passion_x509v3_set_ctx_nodb(&context)
        X509V3_set_ctx(&context, issuer ?? certificate, certificate, nil, nil, 0)
        for (nid, value) in extensions where ok {
            guard let ext = X509V3_EXT_conf_nid(nil, &context, nid, value) else {
                ok = false
                break
            }
            ok = X509_add_ext(certificate, ext, -1) == 1
            X509_EXTENSION_free(ext)
        }
        if issuer != nil {
            if let ext = X509V3_EXT_conf_nid(nil, &context, NID_authority_key_identifier, "keyid:always") {
                ok = ok && X509_add_ext(certificate, ext, -1) == 1
                X509_EXTENSION_free(ext)
            }
        }
        ok = ok && X509_sign(certificate, issuerKey.key, EVP_sha256()) > 0
        guard ok else {
            X509_free(certificate)
            throw TLSError.fromQueue("cannot build certificate for \(commonName)")
        }
        return certificate
    }

    private static func loadCertificate(_ pem: String) throws -> OpaquePointer {
        ERR_clear_error()
        let bio = try memoryBIO(pem)
        defer { BIO_free(bio) }
        guard let certificate = PEM_read_bio_X509(bio, nil, nil, nil) else {
            throw TLSError.fromQueue("invalid PEM certificate")
        }
        return certificate
    }

    private static func pem(_ certificate: OpaquePointer) throws -> String {
        guard let bio = passion_bio_new_mem() else { throw TLSError.fromQueue("BIO_new") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_X509(bio, certificate) == 1 else { throw TLSError.fromQueue("PEM_write_bio_X509") }
        return readAll(bio)
    }

    fileprivate static func memoryBIO(_ text: String) throws -> OpaquePointer {
        guard let bio = passion_bio_new_mem() else { throw TLSError.fromQueue("BIO_new") }
        let bytes = Array(text.utf8)
        _ = BIO_write(bio, bytes, Int32(bytes.count))
        return bio
    }

    fileprivate static func readAll(_ bio: OpaquePointer) -> String {
        let length = Int(passion_bio_pending(bio))
        var bytes = [UInt8](repeating: 0, count: length)
        let read = BIO_read(bio, &bytes, Int32(length))
        return String(decoding: bytes.prefix(Int(max(read, 0))), as: UTF8.self)
    }
}

/// An EVP_PKEY owned for the duration of certificate building.
private final class PrivateKey {
    let key: OpaquePointer

    private init(key: OpaquePointer) { self.key = key }

    deinit { EVP_PKEY_free(key) }

    static func generate() throws -> PrivateKey {
        guard let key = passion_generate_p256_key() else { throw TLSError.fromQueue("cannot generate a P-256 key") }
        return PrivateKey(key: key)
    }

    convenience init(pem: String) throws {
        let bio = try CertificateAuthority.memoryBIO(pem)
        defer { BIO_free(bio) }
        guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else {
            throw TLSError.fromQueue("invalid PEM private key")
        }
        self.init(key: key)
    }

    func pem() throws -> String {
        guard let bio = passion_bio_new_mem() else { throw TLSError.fromQueue("BIO_new") }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) == 1 else {
            throw TLSError.fromQueue("PEM_write_bio_PrivateKey")
        }
        return CertificateAuthority.readAll(bio)
    }
}
