import COpenSSL
import NIOCore

/// What a completed handshake established; fired as a user inbound event.
public struct TLSHandshakeCompleted: Sendable, Equatable {
    /// The protocol chosen through ALPN, if any.
    public var applicationProtocol: String?
    /// For example `TLSv1.3`.
    public var protocolVersion: String
    public var cipher: String
    /// The names in the peer's verified certificate (mTLS clients, servers); nil without one.
    public var peerCertificate: PeerCertificateNames?
}

/// The names a verified peer certificate carries, for matching it to an account.
public struct PeerCertificateNames: Sendable, Hashable {
    /// The subject's common name; nil when it has none, or more than one.
    public var commonName: String?
    /// subjectAltName dNSName entries.
    public var dnsNames: [String]
    /// subjectAltName uniformResourceIdentifier entries, such as SPIFFE ids.
    public var uris: [String]
    /// Whether the certificate has a subjectAltName extension, even one with no usable entry:
    /// then its common name is never a name.
    public var hasAlternativeNames: Bool
    /// More SAN entries than are read: the certificate cannot be matched unambiguously.
    public var tooManyNames = false

    public init(commonName: String? = nil, dnsNames: [String] = [], uris: [String] = [], hasAlternativeNames: Bool? = nil) {
        self.commonName = commonName
        self.dnsNames = dnsNames
        self.uris = uris
        self.hasAlternativeNames = hasAlternativeNames ?? !(dnsNames.isEmpty && uris.isEmpty)
    }

    /// The names to match, as TLS matches a host name (RFC 6125 §6.4.4): the DNS and URI SAN
    /// entries, and the common name only for a certificate without a subjectAltName extension
    /// when the caller allows it.
    public func matchableNames(commonNameFallback: Bool) -> [String] {
        guard !hasAlternativeNames else { return dnsNames + uris }
        return commonNameFallback ? commonName.map { [$0] } ?? [] : []
    }

    /// Entries read per kind at most.
    public static let maximumNames = 1000
}

/// Runs TLS over a channel with OpenSSL and memory BIOs: ciphertext in and out of the socket,
/// plaintext to and from the handlers after it.
///
/// Plaintext writes are gathered until flush and encrypted together, so one flush of many
/// small frames becomes one socket write of full TLS records.
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum State {
        case idle
        case handshaking
        case active
        case closing
        case closed
    }

    private let tlsContext: TLSContext
    private var ssl: OpaquePointer?
    private var readBIO: OpaquePointer?
    private var writeBIO: OpaquePointer?
    private var state: State = .idle
    private var pendingPlaintext: ByteBuffer?
    private var pendingPromise: EventLoopPromise<Void>?
    private var readScratch: ByteBuffer?
    private var closePromise: EventLoopPromise<Void>?

    public init(context: TLSContext) {
        self.tlsContext = context
    }

    deinit {
        if let ssl { SSL_free(ssl) }  // frees both BIOs too
    }

    // MARK: Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        do {
            let ssl = try tlsContext.makeConnection()
            guard let readBIO = passion_bio_new_mem(), let writeBIO = passion_bio_new_mem() else {
                throw TLSError.fromQueue("cannot allocate BIOs")
            }
            passion_bio_set_mem_eof_return(readBIO, -1)
            SSL_set_bio(ssl, readBIO, writeBIO)
            if tlsContext.configuration.role == .server {
                SSL_set_accept_state(ssl)
            } else {
                SSL_set_connect_state(ssl)
            }
            self.ssl = ssl
            self.readBIO = readBIO
            self.writeBIO = writeBIO
            if context.channel.isActive { startHandshake(context: context) }
        } catch {
            context.fireErrorCaught(error)
            context.close(promise: nil)
        }
    }

    public func channelActive(context: ChannelHandlerContext) {
        startHandshake(context: context)
        context.fireChannelActive()
    }

    private func startHandshake(context: ChannelHandlerContext) {
        guard case .idle = state, ssl != nil else { return }
        state = .handshaking
        advanceHandshake(context: context)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        let wasActive: Bool
        if case .handshaking = state {
            wasActive = false
        } else {
            wasActive = true
        }
        state = .closed
        failPending(ChannelError.ioOnClosedChannel)
        if !wasActive {
            context.fireErrorCaught(TLSError("connection closed during the TLS handshake"))
        }
        context.fireChannelInactive()
    }

    // MARK: Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let ciphertext = unwrapInboundIn(data)
        guard let readBIO else { return }
        ciphertext.withUnsafeReadableBytes { bytes in
            _ = BIO_write(readBIO, bytes.baseAddress, Int32(bytes.count))
        }
        switch state {
        case .handshaking:
            advanceHandshake(context: context)
            if case .active = state { readPlaintext(context: context) }
        case .active, .closing:
            readPlaintext(context: context)
        case .idle, .closed:
            break
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        // Anything OpenSSL produced while reading (alerts, key updates) goes out now.
        flushCiphertext(context: context, promise: nil)
        context.fireChannelReadComplete()
    }

    private func advanceHandshake(context: ChannelHandlerContext) {
        guard let ssl else { return }
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            state = .active
            flushCiphertext(context: context, promise: nil)
            context.fireUserInboundEventTriggered(handshakeSummary(ssl))
            if pendingPlaintext != nil { encryptPending(context: context) }
            return
        }
        let error = SSL_get_error(ssl, result)
        switch error {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            flushCiphertext(context: context, promise: nil)
        default:
            fail(context: context, handshakeError(ssl))
        }
    }

    private func handshakeError(_ ssl: OpaquePointer) -> TLSError {
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK {
            let reason = String(cString: X509_verify_cert_error_string(verify))
            ERR_clear_error()
            return TLSError("handshake failed: certificate verify failed: \(reason)")
        }
        return TLSError.fromQueue("handshake failed")
    }

    private func handshakeSummary(_ ssl: OpaquePointer) -> TLSHandshakeCompleted {
        var alpnPointer: UnsafePointer<UInt8>?
        var alpnLength: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &alpnPointer, &alpnLength)
        let alpn = alpnPointer.map {
            String(decoding: UnsafeBufferPointer(start: $0, count: Int(alpnLength)), as: UTF8.self)
        }
        let version = String(cString: SSL_get_version(ssl))
        let cipher = SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? ""
        var names: PeerCertificateNames?
        if let certificate = SSL_get1_peer_certificate(ssl) {
            defer { X509_free(certificate) }
            names = Self.names(of: certificate)
        }
        return TLSHandshakeCompleted(
            applicationProtocol: alpn, protocolVersion: version, cipher: cipher, peerCertificate: names)
    }

    static func names(of certificate: OpaquePointer) -> PeerCertificateNames {
        var names = PeerCertificateNames()
        if let subject = X509_get_subject_name(certificate) {
            let first = X509_NAME_get_index_by_NID(subject, NID_commonName, -1)
            // Two common names are ambiguous; neither is believed.
            if first >= 0, X509_NAME_get_index_by_NID(subject, NID_commonName, first) < 0 {
                var buffer = [CChar](repeating: 0, count: 256)
                let length = X509_NAME_get_text_by_NID(subject, NID_commonName, &buffer, Int32(buffer.count))
                if length > 0, length < Int32(buffer.count) - 1 {
                    let bytes = buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }
                    if !bytes.contains(0) { names.commonName = String(decoding: bytes, as: UTF8.self) }
                }
            }
        }
        names.hasAlternativeNames = passion_x509_has_alt_names(certificate) != 0
        for (type, keyPath) in [(passion_gen_dns(), \PeerCertificateNames.dnsNames), (passion_gen_uri(), \PeerCertificateNames.uris)] {
            var buffer = [CChar](repeating: 0, count: 1024)
            var index = 0
            while true {
                guard index < PeerCertificateNames.maximumNames else {
                    names.tooManyNames = true
                    break
                }
                let length = passion_x509_alt_name(certificate, type, Int32(index), &buffer, Int32(buffer.count))
                index += 1
                if length == -2 { break }
                guard length >= 0 else { continue }
                names[keyPath: keyPath].append(String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
        }
        return names
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        guard let ssl, let readBIO else { return }
        var buffer = readScratch ?? context.channel.allocator.buffer(capacity: 16 * 1024)
        readScratch = nil
        while true {
            if buffer.writableBytes < 1024 {
                buffer.reserveCapacity(minimumWritableBytes: 16 * 1024)
            }
            ERR_clear_error()
            let count = buffer.withUnsafeMutableWritableBytes { bytes in
                SSL_read(ssl, bytes.baseAddress, Int32(min(bytes.count, Int(Int32.max))))
            }
            if count > 0 {
                buffer.moveWriterIndex(forwardBy: Int(count))
                guard SSL_pending(ssl) == 0, passion_bio_pending(readBIO) == 0 else { continue }
            }
            // Once every byte that arrived is read, another SSL_read could only answer
            // WANT_READ: one more call (and error-queue clearing) on every wake-up of either side.
            let error = count > 0 ? SSL_ERROR_WANT_READ : SSL_get_error(ssl, count)
            if buffer.readableBytes > 0 {
                context.fireChannelRead(wrapInboundOut(buffer))
                // Keeps the storage when the handlers after this one kept none of it, as after
                // whole frames: a fresh 16 KB buffer per read was a malloc and a page touch on
                // every wake-up. `clear` allocates anew only while someone still holds it.
                buffer.clear()
            }
            switch error {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                readScratch = buffer
                return
            case SSL_ERROR_ZERO_RETURN:
                // The peer sent close_notify: answer it and close.
                state = .closing
                _ = SSL_shutdown(ssl)
                flushCiphertext(context: context, promise: nil)
                context.close(promise: nil)
                return
            default:
                fail(context: context, TLSError.fromQueue("TLS read failed"))
                return
            }
        }
    }

    // MARK: Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var plaintext = unwrapOutboundIn(data)
        switch state {
        case .closed, .closing:
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        default:
            break
        }
        if pendingPlaintext == nil {
            pendingPlaintext = plaintext
        } else {
            pendingPlaintext!.writeBuffer(&plaintext)
        }
        if let promise {
            if let pendingPromise {
                pendingPromise.futureResult.cascade(to: promise)
            } else {
                pendingPromise = promise
            }
        }
    }

    public func flush(context: ChannelHandlerContext) {
        guard case .active = state else { return }  // handshake completion flushes what waits
        encryptPending(context: context)
    }

    private func encryptPending(context: ChannelHandlerContext) {
        guard let ssl, var plaintext = pendingPlaintext else {
            context.flush()
            return
        }
        let promise = pendingPromise
        pendingPlaintext = nil
        pendingPromise = nil
        while plaintext.readableBytes > 0 {
            ERR_clear_error()
            let written = plaintext.withUnsafeReadableBytes { bytes in
                SSL_write(ssl, bytes.baseAddress, Int32(min(bytes.count, Int(Int32.max))))
            }
            guard written > 0 else {
                let error = TLSError.fromQueue("TLS write failed")
                promise?.fail(error)
                fail(context: context, error)
                return
            }
            plaintext.moveReaderIndex(forwardBy: Int(written))
        }
        flushCiphertext(context: context, promise: promise)
    }

    /// Sends whatever OpenSSL wrote into the write BIO.
    private func flushCiphertext(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard let writeBIO else {
            promise?.succeed()
            return
        }
        let pending = passion_bio_pending(writeBIO)
        guard pending > 0 else {
            promise?.succeed()
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: Int(pending))
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Int(pending)) { bytes in
            Int(max(0, BIO_read(writeBIO, bytes.baseAddress, Int32(pending))))
        }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: promise)
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, case .active = state, let ssl else {
            context.close(mode: mode, promise: promise)
            return
        }
        // Send what is pending and a close_notify before closing the socket.
        encryptPending(context: context)
        state = .closing
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        flushCiphertext(context: context, promise: nil)
        context.close(mode: mode, promise: promise)
    }

    private func fail(context: ChannelHandlerContext, _ error: any Error) {
        state = .closed
        failPending(error)
        // Deliver the alert OpenSSL queued (no_application_protocol, protocol_version,
        // bad_certificate) first: the handlers after this one close the channel on the error.
        flushCiphertext(context: context, promise: nil)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failPending(_ error: any Error) {
        pendingPlaintext = nil
        let promise = pendingPromise
        pendingPromise = nil
        promise?.fail(error)
    }
}

@available(*, unavailable)
extension TLSHandler: Sendable {}
