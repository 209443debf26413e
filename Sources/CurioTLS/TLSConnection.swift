import CCurioOpenSSL
import Curio

/// A TLS connection over a Curio `Socket`. OpenSSL works on two memory
/// BIOs; every byte goes over the wire through the socket's own `recv` and
/// `send`, so the connection runs on both of Curio's backends (io_uring and
/// epoll), and its handshake, reads and writes are ordinary Curio blocking
/// calls: `timeoutAfter(_:_:)`, task cancellation and the rest apply.
///
/// It is a `ByteChannel`: wrap it in a `SocketStream` for `read`,
/// `readExactly`, `readLine`, `write` and `for try await line in stream`.
///
/// ```swift
/// let sock = try Socket(.inet, .stream)
/// try await sock.connect(("127.0.0.1", 8443))
/// let tls = try await TLSConnection.connect(over: sock, context: client, serverName: "localhost")
/// let stream = SocketStream(tls)
/// try await stream.write("hello\n")
/// ```
///
/// One task may read while another writes, as with a socket; two readers
/// (or two writers) at once get `ResourceBusy`. A connection belongs to the
/// kernel whose task made it.
public final class TLSConnection: ByteChannel, @unchecked Sendable {
    // @unchecked Sendable, as Socket: the mutable state is touched only by
    // tasks of one kernel (one thread), which `checkKernel` enforces before
    // any OpenSSL call; `close()` from elsewhere only closes the socket.

    /// The socket underneath; the connection owns it and closes it.
    public let socket: Socket
    /// The context the connection was made from.
    public let context: TLSContext
    /// Client connections: the name the server was asked for and verified
    /// against (nil for servers).
    public let serverName: String?
    /// What a client's sessions are kept under in its context.
    let sessionKey: String?

    private let ssl: OpaquePointer
    private let rbio: OpaquePointer  // network → OpenSSL
    private let wbio: OpaquePointer  // OpenSSL → network
    private let isServer: Bool
    private weak var kernel: Kernel?
    /// Ciphertext read from the socket before OpenSSL takes it.
    /// Starts at one record's worth and grows (to `maxBuffer`) when a
    /// receive fills it: an idle connection holds little, a bulk transfer
    /// takes few receives.
    private var inBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 17 * 1024, alignment: 16)
    /// Plaintext OpenSSL decrypted, before it becomes an array; grows as
    /// `inBuffer` does.
    private var plainBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 16)
    /// Ciphertext on its way to the socket; [outStart, outEnd) is unsent.
    /// Grows (to `maxOutBuffer`) while writes are large.
    private var outBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 17 * 1024, alignment: 16)
    private let maxOutBuffer = 128 * 1024
    private let maxBuffer = 64 * 1024
    private var outStart = 0, outEnd = 0
    /// Taken by whoever moves ciphertext to the socket (a writer, or a
    /// reader answering the peer), so records never interleave.
    private let sendLock = Lock()
    private var flushing = false
    private var receiving = false
    private var sending = false
    private var handshakeDone = false
    private var sentCloseNotify = false
    private var peerClosed = false
    private var closed = false
    /// The first fatal error; later calls throw it again.
    private var failure: TLSError?
    /// A fatal error met by a read that had bytes to hand over first: the
    /// next read throws it.
    private var deferredError: TLSError?
    /// The first byte the peer sent, to tell plaintext from TLS.
    private var firstByte: UInt8?

    private init(socket: Socket, context: TLSContext, isServer: Bool, serverName: String?, sessionKey: String?) throws {
        ERR_clear_error()
        guard let ssl = SSL_new(context.ctx) else { throw configurationError("cannot create an SSL connection") }
        let rbio = BIO_new(BIO_s_mem()), wbio = BIO_new(BIO_s_mem())
        guard let rbio, let wbio else {
            BIO_free(rbio)
            BIO_free(wbio)
            SSL_free(ssl)
            throw configurationError("cannot create memory BIOs")
        }
        // An empty read BIO means "no bytes yet" (retry), not end of stream:
        // the end is told to OpenSSL by the caller's logic instead.
        ccurio_bio_set_mem_eof_return(rbio, -1)
        ccurio_bio_set_mem_eof_return(wbio, -1)
        SSL_set_bio(ssl, rbio, wbio)  // the SSL owns both BIOs from here on
        self.ssl = ssl
        self.rbio = rbio
        self.wbio = wbio
        self.socket = socket
        self.context = context
        self.isServer = isServer
        self.serverName = serverName
        self.sessionKey = sessionKey
        self.kernel = Kernel.current
        // From here on deinit runs (also when this init throws) and frees
        // the SSL, which frees both BIOs.
        context.liveConnections.add(1, ordering: .relaxed)
        SSL_set_ex_data(ssl, 0, Unmanaged.passUnretained(self).toOpaque())
        if isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            try configureClient()
        }
    }

    deinit {
        SSL_free(ssl)  // frees both BIOs
        context.liveConnections.subtract(1, ordering: .relaxed)
        inBuffer.deallocate()
        plainBuffer.deallocate()
        outBuffer.deallocate()
    }

    private func configureClient() throws {
        let config = context.configuration
        if let name = serverName, !name.isEmpty {
            if isIPAddress(name) {
                // RFC 6066 §3: no IP literals in SNI; they are checked
                // against the certificate's IP address entries instead.
                if config.certificateVerification == .fullVerification,
                   X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) != 1 {
                    throw configurationError("cannot verify against the IP address '\(name)'")
                }
            } else {
                if ccurio_ssl_set_sni(ssl, name) != 1 { throw configurationError("cannot send SNI '\(name)'") }
                if config.certificateVerification == .fullVerification {
                    // "*.example.com" matches a whole label only, never "w*.example.com".
                    SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                    if SSL_set1_host(ssl, name) != 1 {
                        throw configurationError("cannot verify against the host name '\(name)'")
                    }
                }
            }
        } else if config.certificateVerification == .fullVerification {
            throw TLSError(.configuration,
                           "hostname verification needs a serverName (or certificateVerification .noHostnameVerification)",
                           operation: "connect")
        }
        if let key = sessionKey, let session = context.takeSession(for: key) {
            SSL_set_session(ssl, session)  // takes its own reference
            SSL_SESSION_free(session)
        }
    }

    // MARK: Making connections

    /// Runs the client side of a handshake over a connected socket and
    /// returns the connection. `serverName` is sent as SNI (for a DNS
    /// name) and verified against the server's certificate (DNS name or IP
    /// address) unless the context's verification says otherwise.
    /// `sessionKey` (default: server name and peer address) is where the
    /// context keeps sessions to resume.
    ///
    /// The connection owns `socket` from the call on: if the handshake
    /// fails (or is cancelled), the socket is closed.
    public static func connect(over socket: Socket, context: TLSContext, serverName: String?,
                               sessionKey: String? = nil, file: StaticString = #filePath, line: UInt = #line,
                               function: StaticString = #function) async throws -> TLSConnection {
        guard context.configuration.role == .client else {
            socket.close()
            throw TLSError(.configuration, "TLSConnection.connect needs a client context", operation: "connect")
        }
        let key: String?
        if context.configuration.sessionResumption {
            key = sessionKey ?? "\(serverName ?? "")@\((try? socket.peerAddress).map { "\($0)" } ?? "?")"
        } else {
            key = nil
        }
        return try await handshake(socket, context, isServer: false, serverName: serverName, sessionKey: key,
                                   site: (file, line, function))
    }

    /// Runs the server side of a handshake over an accepted socket and
    /// returns the connection. As with ``connect(over:context:serverName:sessionKey:file:line:function:)``,
    /// a failed handshake closes the socket.
    public static func accept(over socket: Socket, context: TLSContext, file: StaticString = #filePath,
                              line: UInt = #line, function: StaticString = #function) async throws -> TLSConnection {
        guard context.configuration.role == .server else {
            socket.close()
            throw TLSError(.configuration, "TLSConnection.accept needs a server context", operation: "accept")
        }
        return try await handshake(socket, context, isServer: true, serverName: nil, sessionKey: nil,
                                   site: (file, line, function))
    }

    private static func handshake(_ socket: Socket, _ context: TLSContext, isServer: Bool, serverName: String?,
                                  sessionKey: String?, site: Site) async throws -> TLSConnection {
        let conn: TLSConnection
        do {
            conn = try TLSConnection(socket: socket, context: context, isServer: isServer,
                                     serverName: serverName, sessionKey: sessionKey)
        } catch {
            socket.close()
            throw error
        }
        do {
            try await conn.runHandshake(site)
            return conn
        } catch {
            conn.abandon()
            throw error
        }
    }

    private func runHandshake(_ site: Site) async throws {
        try checkKernel("handshake")
        let what = isServer ? "handshake with a client" : "handshake with \(serverName ?? "the server")"
        while true {
            ERR_clear_error()
            let r = SSL_do_handshake(ssl)
            if r == 1 {
                handshakeDone = true
                try await flush(site)
                return
            }
            switch SSL_get_error(ssl, r) {
            case SSL_ERROR_WANT_READ:
                do {
                    try await flush(site)
                    if try await !fill(site) {
                        throw fail(TLSError(.unexpectedEOF,
                                            "the peer closed the connection in the middle of the handshake (truncated handshake)",
                                            operation: what))
                    }
                } catch let e as SocketError where e.errno == ECONNRESET || e.errno == EPIPE {
                    // A peer that vanishes mid-handshake truncates it,
                    // whether it closed or reset.
                    throw fail(TLSError(.unexpectedEOF,
                                        "the peer reset the connection in the middle of the handshake (truncated handshake; \(e))",
                                        operation: what))
                }
            case SSL_ERROR_WANT_WRITE:
                try await flush(site)
            case let code:
                throw fail(error(code, r, operation: what))
            }
        }
    }

    // MARK: What was negotiated

    /// The ALPN protocol both sides chose, or nil.
    public var negotiatedProtocol: String? {
        var data: UnsafePointer<UInt8>?
        var len: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &len)
        guard let data, len > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(len)), as: UTF8.self)
    }

    /// "TLSv1.3" or "TLSv1.2".
    public var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    /// The cipher suite in use ("TLS_AES_256_GCM_SHA384").
    public var cipherSuite: String? {
        SSL_get_current_cipher(ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) }
    }

    /// Whether the handshake resumed an earlier session.
    public var sessionReused: Bool { SSL_session_reused(ssl) == 1 }

    /// Servers: the name the client asked for through SNI, or nil.
    public var requestedServerName: String? {
        SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name).map { String(cString: $0) }
    }

    /// The subject of the peer's certificate in RFC 2253 form
    /// ("CN=client,O=Example"), or nil when it sent none (servers learn a
    /// client's only when they ask for client certificates).
    public var peerCertificateSubject: String? {
        var buf = [CChar](repeating: 0, count: 1024)
        guard ccurio_peer_subject(ssl, &buf, Int32(buf.count)) == 1 else { return nil }
        return cString(buf)
    }

    /// Whether the peer has ended its side with a close_notify.
    public var peerHasClosed: Bool { peerClosed }

    // MARK: ByteChannel

    /// Up to `maxBytes` bytes of plaintext; empty once the peer has sent
    /// close_notify. A TCP end without close_notify throws
    /// ``TLSError/Kind/unexpectedEOF`` (a possible truncation) unless the
    /// configuration allows it. Throws ``TLSError`` for records that are
    /// not valid TLS and for alerts from the peer.
    public func recv(_ maxBytes: Int, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> [UInt8] {
        guard maxBytes > 0 else {
            throw CurioUsageError(.invalidArgument, "recv: maxBytes must be > 0, got \(maxBytes)")
        }
        try checkUsable("recv")
        if receiving { throw ResourceBusy("another task is already receiving on this TLS connection") }
        receiving = true
        defer { receiving = false }
        if peerClosed { return [] }
        if let e = deferredError {
            deferredError = nil
            throw fail(e)
        }
        let site: Site = (file, line, function)
        let limit = min(maxBytes, plainBuffer.count)
        var total = 0
        while true {
            ERR_clear_error()
            var got = 0
            let r = SSL_read_ex(ssl, plainBuffer.baseAddress! + total, limit - total, &got)
            if r == 1 {
                total += got
                if total == limit { break }
                continue
            }
            let code = SSL_get_error(ssl, r)
            if code == SSL_ERROR_ZERO_RETURN {
                peerClosed = true
                break
            }
            if total > 0 {
                // Hand over what arrived first; a fatal error that stopped
                // us comes with the next read.
                if code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE {
                    deferredError = error(code, r, operation: "read")
                }
                break
            }
            switch code {
            case SSL_ERROR_WANT_READ:
                // A read can make OpenSSL answer (a key update): send it.
                if outStart < outEnd || BIO_ctrl_pending(wbio) > 0, !flushing { try await flush(site) }
                if try await !fill(site) {
                    if context.configuration.allowsEOFWithoutCloseNotify {
                        peerClosed = true
                        return []
                    }
                    throw fail(TLSError(.unexpectedEOF,
                                        "the peer closed the TCP connection without a TLS close_notify (the data may be truncated)",
                                        operation: "read"))
                }
            case SSL_ERROR_WANT_WRITE:
                try await flush(site)
            default:
                throw fail(error(code, r, operation: "read"))
            }
        }
        let out = Array(UnsafeRawBufferPointer(rebasing: plainBuffer[0..<total]))
        if total == plainBuffer.count && maxBytes > total && plainBuffer.count < maxBuffer {
            // The caller wanted more than a buffer held: take more next time.
            plainBuffer.deallocate()
            plainBuffer = .allocate(byteCount: maxBuffer, alignment: 16)
        }
        return out
    }

    /// Encrypts and sends all of `bytes`. A cancellation or timeout
    /// half-way says in `bytesSent` how many bytes of plaintext were
    /// committed to the stream: they went out, or are queued and go out
    /// first with the next write (or with close_notify).
    public func sendAll(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws {
        try checkUsable("send")
        if sentCloseNotify { throw TLSError(.closed, "the connection was shut down for writing", operation: "send") }
        if sending { throw ResourceBusy("another task is already sending on this TLS connection") }
        sending = true
        defer { sending = false }
        let site: Site = (file, line, function)
        var committed = 0
        do {
            // Up to 64 KiB of plaintext (four records) per trip to the
            // socket: few sends, bounded memory. OpenSSL copies what it
            // encrypts, so the array is only borrowed for the call.
            while committed < bytes.count {
                let n = min(bytes.count - committed, 64 * 1024)
                ERR_clear_error()
                var written = 0
                let r = bytes.withUnsafeBytes { SSL_write_ex(ssl, $0.baseAddress! + committed, n, &written) }
                if r != 1 {
                    let code = SSL_get_error(ssl, r)
                    if code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE {
                        throw fail(error(code, r, operation: "write"))
                    }
                }
                committed += written
                try await flush(site)
            }
            // An empty write still pushes out anything left by a cancelled one.
            if bytes.isEmpty { try await flush(site) }
        } catch let e as CancelledError {
            throw withProgress(e, bytesSent: committed)
        }
    }

    /// Sends close_notify (through the kernel, so it honours timeouts and
    /// cancellation) and ends this side of the stream: later writes throw
    /// ``TLSError/Kind/closed``, reads go on until the peer's close_notify.
    /// The socket stays open until ``close()``.
    public func shutdown(file: StaticString = #filePath, line: UInt = #line,
                         function: StaticString = #function) async throws {
        try checkUsable("shutdown")
        guard !sentCloseNotify else { return }
        sentCloseNotify = true
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
        try await flush((file, line, function))
    }

    /// Sends close_notify if it can go without waiting (what is queued and
    /// the alert fit in the socket's buffer, which they nearly always do),
    /// then closes the socket. Never blocks: for a close_notify that must
    /// get out, `await shutdown()` first. Closing twice is harmless.
    public func close() {
        guard !closed else { return }
        closed = true
        if Kernel.current === kernel, handshakeDone, failure == nil, !flushing {
            if !sentCloseNotify {
                sentCloseNotify = true
                ERR_clear_error()
                _ = SSL_shutdown(ssl)
                ERR_clear_error()
            }
            // Also what a cancelled write or shutdown left queued.
            sendWithoutWaiting()
        }
        socket.close()
    }

    /// Gives up a connection whose handshake failed: the alert OpenSSL
    /// wrote (if any) goes out when the socket can take it now, then the
    /// socket is closed.
    private func abandon() {
        closed = true
        if Kernel.current === kernel, !flushing { sendWithoutWaiting() }
        ERR_clear_error()
        socket.close()
    }

    // MARK: Moving ciphertext

    private typealias Site = (file: StaticString, line: UInt, function: StaticString)

    /// Receives ciphertext into OpenSSL's read BIO → false at end of stream.
    private func fill(_ site: Site) async throws -> Bool {
        let n = try await socket.recv(into: inBuffer, file: site.file, line: site.line, function: site.function)
        if n == 0 { return false }
        if firstByte == nil { firstByte = inBuffer[0] }
        let w = BIO_write(rbio, inBuffer.baseAddress, Int32(n))
        precondition(w == Int32(n), "a memory BIO refused \(n) bytes")
        if n == inBuffer.count && inBuffer.count < maxBuffer {
            // No receive is in flight into it now.
            inBuffer.deallocate()
            inBuffer = .allocate(byteCount: maxBuffer, alignment: 16)
        }
        return true
    }

    /// Sends everything OpenSSL has written, in order, one sender at a time.
    private func flush(_ site: Site) async throws {
        if outStart == outEnd && BIO_ctrl_pending(wbio) == 0 { return }
        try await sendLock.withLock {
            flushing = true
            defer { flushing = false }
            while true {
                if outStart == outEnd && !pullCiphertext() { return }
                let sent = try await socket.send(UnsafeRawBufferPointer(rebasing: outBuffer[outStart..<outEnd]),
                                                 flags: Int32(MSG_NOSIGNAL),
                                                 file: site.file, line: site.line, function: site.function)
                outStart += sent
            }
        }
    }

    /// Moves what OpenSSL wrote into `outBuffer` (empty) → false if nothing.
    private func pullCiphertext() -> Bool {
        let pending = Int(BIO_ctrl_pending(wbio))
        guard pending > 0 else { return false }
        if outBuffer.count < pending && outBuffer.count < maxOutBuffer {
            outBuffer.deallocate()
            outBuffer = .allocate(byteCount: min(max(pending, outBuffer.count * 2), maxOutBuffer), alignment: 16)
        }
        let n = BIO_read(wbio, outBuffer.baseAddress, Int32(min(pending, outBuffer.count)))
        outStart = 0
        outEnd = max(0, Int(n))
        return outEnd > 0
    }

    /// Writes queued ciphertext straight to the descriptor without waiting
    /// (MSG_DONTWAIT), stopping at the first refusal. Only when no send of
    /// this connection is in flight, so bytes cannot interleave.
    private func sendWithoutWaiting() {
        let fd = socket.fd
        // A sendAll of the plain socket that returned early (io_uring) must
        // go first; the next flush sends these bytes behind it.
        guard fd >= 0, !socket.hasSendInFlight else { return }
        while outStart < outEnd || pullCiphertext() {
            let n = Glibc.send(fd, outBuffer.baseAddress! + outStart, outEnd - outStart,
                               Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
            if n <= 0 { return }
            outStart += n
        }
    }

    // MARK: State and errors

    private func checkKernel(_ what: String) throws {
        guard let k = Kernel.current else {
            throw CurioUsageError(.notInKernel, "TLSConnection.\(what) called outside a task of a running kernel")
        }
        if kernel == nil { kernel = k }
        if kernel !== k {
            throw CurioUsageError(.wrongKernel, "TLSConnection.\(what) from a task of another kernel than the connection's")
        }
    }

    private func checkUsable(_ what: String) throws {
        if closed { throw TLSError(.closed, "the connection is closed", operation: what) }
        if let failure { throw TLSError(.closed, "the connection failed earlier: \(failure.message)", operation: what) }
        try checkKernel(what)
    }

    /// Remembers the first fatal error; sends the alert OpenSSL queued for
    /// the peer if that can go without waiting.
    private func fail(_ e: TLSError) -> TLSError {
        if failure == nil { failure = e }
        if !flushing { sendWithoutWaiting() }
        return e
    }

    /// The error for a failed SSL call, from OpenSSL's error queue and the
    /// certificate verification result; empties the queue.
    private func error(_ code: Int32, _ ret: Int32, operation: String) -> TLSError {
        let queue = drainOpenSSLErrors()
        let texts = queue.map(\.text)
        let verify = SSL_get_verify_result(ssl)
        if !handshakeDone && verify != Int(X509_V_OK) {
            let why = String(cString: X509_verify_cert_error_string(verify))
            return TLSError(.certificateVerificationFailed, "certificate verification failed: \(why)",
                            operation: operation, verifyResult: Int32(verify), openSSLErrors: texts)
        }
        guard let last = queue.last(where: \.isSSL) ?? queue.last else {
            if code == SSL_ERROR_SYSCALL {
                return TLSError(.unexpectedEOF, "the connection ended unexpectedly", operation: operation)
            }
            return TLSError(handshakeDone ? .protocolError : .handshakeFailed, "OpenSSL error \(code)",
                            operation: operation)
        }
        let reason = last.reason
        if !handshakeDone, let b = firstByte, !isTLSRecordType(b) {
            return TLSError(.notTLS, "the peer does not speak TLS (\(reason)); its first bytes are not a TLS record"
                            + (isServer ? " (a plaintext client on a TLS port?)" : " (a plaintext server?)"),
                            operation: operation, openSSLErrors: texts)
        }
        if last.isSSL && last.reasonCode == SSL_R_UNEXPECTED_EOF_WHILE_READING {
            return TLSError(.unexpectedEOF, reason, operation: operation, openSSLErrors: texts)
        }
        return TLSError(handshakeDone ? .protocolError : .handshakeFailed, reason, operation: operation,
                        openSSLErrors: texts)
    }
}

/// The record types of TLS: change_cipher_spec, alert, handshake,
/// application_data.
private func isTLSRecordType(_ b: UInt8) -> Bool { (20...23).contains(b) }

private func isIPAddress(_ s: String) -> Bool {
    var v4 = in_addr(), v6 = in6_addr()
    return inet_pton(AF_INET, s, &v4) == 1 || inet_pton(AF_INET6, s, &v6) == 1
}

extension SocketStream {
    /// The TLS connection underneath, when the stream runs over one.
    public var tls: TLSConnection? { channel as? TLSConnection }
}

#if canImport(Glibc)
import Glibc
#endif
