import Curio
import CCurioOpenSSL
import Synchronization

/// A loaded ``TLSConfiguration``: the OpenSSL context (certificates, trust
/// store, ALPN, session cache) every connection made with it shares. Make
/// one per configuration and reuse it: loading certificates and the system
/// trust store is the expensive part, and a client's sessions are resumed
/// only through the context that made them.
///
/// A context is safe to share between tasks and kernels (threads).
public final class TLSContext: @unchecked Sendable {
    // @unchecked Sendable: every stored property is set in init and never
    // changed after it, except `sessions`, which is behind Curio's `Locked`
    // (a Mutex ThreadSanitizer can see). OpenSSL documents an SSL_CTX as
    // safe to use from many threads once it is set up (SSL_new only reads
    // it and takes a reference); the SNI and new-session callbacks read only
    // immutable state or go through the lock.

    /// The configuration this context was made from.
    public let configuration: TLSConfiguration
    /// The main SSL_CTX.
    let ctx: OpaquePointer
    /// Server contexts chosen by SNI, with the names they serve.
    private let sniContexts: [(names: [String], ctx: OpaquePointer)]
    /// Client sessions by "host:port", for resumption.
    private let sessions = Locked(SessionCache())
    /// Connections made from this context whose SSL is not yet freed.
    let liveConnections = Atomic<Int>(0)

    /// How many connections made from this context are alive (their
    /// OpenSSL state not yet freed): a leak check for tests and monitors.
    public var connectionCount: Int { liveConnections.load(ordering: .relaxed) }

    /// Loads `configuration`: its certificate and key, its trust roots
    /// (the system store is found now), its ALPN list. Throws
    /// ``TLSError/Kind/configuration`` naming what could not be loaded.
    public init(_ configuration: TLSConfiguration) throws {
        ERR_clear_error()
        try Self.validate(configuration)
        let main = try Self.makeContext(configuration, chain: configuration.certificateChain,
                                        key: configuration.privateKey)
        var extra: [(names: [String], ctx: OpaquePointer)] = []
        do {
            for sni in configuration.sniCertificates {
                let c = try Self.makeContext(configuration, chain: sni.certificateChain, key: sni.privateKey)
                extra.append((sni.serverNames.map { $0.lowercased() }, c))
            }
        } catch {
            SSL_CTX_free(main)
            for e in extra { SSL_CTX_free(e.ctx) }
            throw error
        }
        self.configuration = configuration
        self.ctx = main
        self.sniContexts = extra
        if configuration.role == .server && !extra.isEmpty {
            // Unretained: the context outlives every connection made from
            // it (each connection holds it).
            ccurio_ctx_set_servername_callback(main, serverNameCallback, Unmanaged.passUnretained(self).toOpaque())
        }
        if configuration.role == .client && configuration.sessionResumption {
            SSL_CTX_sess_set_new_cb(main, newSessionCallback)
        }
    }

    /// A convenience for ``init(_:)`` with ``TLSConfiguration/client(trustRoots:certificateVerification:alpnProtocols:certificateChain:privateKey:)``.
    public static func client(trustRoots: TLSConfiguration.TrustRoots = .system,
                              certificateVerification: TLSConfiguration.CertificateVerification = .fullVerification,
                              alpnProtocols: [String] = []) throws -> TLSContext {
        try TLSContext(.client(trustRoots: trustRoots, certificateVerification: certificateVerification,
                               alpnProtocols: alpnProtocols))
    }

    deinit {
        SSL_CTX_free(ctx)
        for e in sniContexts { SSL_CTX_free(e.ctx) }
        sessions.withLock { $0.removeAll() }
    }

    /// Sessions held for resumption (clients).
    public var cachedSessionCount: Int { sessions.withLock { $0.count } }

    // MARK: Building SSL_CTX

    private static func validate(_ c: TLSConfiguration) throws {
        if c.minimumVersion > c.maximumVersion {
            throw TLSError(.configuration, "minimumVersion \(c.minimumVersion) is above maximumVersion \(c.maximumVersion)",
                           operation: "configure TLS")
        }
        if c.role == .server && (c.certificateChain == nil || c.privateKey == nil) {
            throw TLSError(.configuration, "a server needs certificateChain and privateKey", operation: "configure TLS")
        }
        if (c.certificateChain == nil) != (c.privateKey == nil) {
            throw TLSError(.configuration, "certificateChain and privateKey go together: one is missing",
                           operation: "configure TLS")
        }
        for p in c.alpnProtocols where p.utf8.isEmpty || p.utf8.count > 255 {
            throw TLSError(.configuration, "ALPN protocol names must be 1...255 bytes, got \"\(p)\"",
                           operation: "configure TLS")
        }
        if c.role == .client && !c.sniCertificates.isEmpty {
            throw TLSError(.configuration, "sniCertificates are for servers", operation: "configure TLS")
        }
    }

    private static func makeContext(_ c: TLSConfiguration, chain: TLSConfiguration.PEM?,
                                    key: TLSConfiguration.PEM?) throws -> OpaquePointer {
        guard let ctx = ccurio_ctx_new(c.role == .server ? 1 : 0, c.minimumVersion.raw, c.maximumVersion.raw) else {
            throw configurationError("cannot create an OpenSSL context")
        }
        do {
            if let chain, let key { try loadIdentity(ctx, chain: chain, key: key) }
            try configureVerification(ctx, c)
            try configureALPN(ctx, c)
            configureSessions(ctx, c)
            return ctx
        } catch {
            SSL_CTX_free(ctx)
            throw error
        }
    }

    private static func loadIdentity(_ ctx: OpaquePointer, chain: TLSConfiguration.PEM,
                                     key: TLSConfiguration.PEM) throws {
        switch chain {
        case .file(let path):
            if SSL_CTX_use_certificate_chain_file(ctx, path) != 1 {
                throw configurationError("cannot load the certificate chain from '\(path)'")
            }
        case .text(let pem):
            let ok = pem.withCString { ccurio_ctx_use_chain_pem(ctx, $0, strlen($0)) }
            if ok != 1 { throw configurationError("cannot load the certificate chain from PEM text") }
        }
        let loaded: Bool
        switch key {
        case .file(let path): loaded = SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) == 1
        case .text(let pem): loaded = pem.withCString { ccurio_ctx_use_key_pem(ctx, $0, strlen($0)) } == 1
        }
        if !loaded {
            // OpenSSL checks the key against the certificate as it loads it.
            if ccurio_err_reason(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH {
                throw configurationError("the private key does not match the certificate")
            }
            switch key {
            case .file(let path): throw configurationError("cannot load the private key from '\(path)'")
            case .text: throw configurationError("cannot load the private key from PEM text")
            }
        }
        if SSL_CTX_check_private_key(ctx) != 1 {
            throw configurationError("the private key does not match the certificate")
        }
    }

    private static func configureVerification(_ ctx: OpaquePointer, _ c: TLSConfiguration) throws {
        let mode: Int32
        switch c.role {
        case .client:
            mode = c.certificateVerification == .none ? SSL_VERIFY_NONE : SSL_VERIFY_PEER
        case .server:
            switch c.clientCertificates {
            case .none: mode = SSL_VERIFY_NONE
            case .optional: mode = SSL_VERIFY_PEER
            case .required: mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
            }
        }
        SSL_CTX_set_verify(ctx, mode, nil)
        guard mode != SSL_VERIFY_NONE else { return }
        switch c.trustRoots {
        case .system:
            if SSL_CTX_set_default_verify_paths(ctx) != 1 { throw configurationError("cannot load the system trust store") }
        case .file(let path):
            if SSL_CTX_load_verify_locations(ctx, path, nil) != 1 {
                throw configurationError("cannot load trusted CA certificates from '\(path)'")
            }
            // A server names the CAs it accepts, so clients pick the right
            // certificate.
            if c.role == .server, let names = SSL_load_client_CA_file(path) { SSL_CTX_set_client_CA_list(ctx, names) }
        case .directory(let path):
            if SSL_CTX_load_verify_locations(ctx, nil, path) != 1 {
                throw configurationError("cannot use the CA directory '\(path)'")
            }
        case .pem(let pem):
            let added = pem.withCString { ccurio_ctx_add_trusted_pem(ctx, $0, strlen($0)) }
            if added < 1 { throw configurationError("no CA certificate found in the trustRoots PEM text") }
        }
    }

    private static func configureALPN(_ ctx: OpaquePointer, _ c: TLSConfiguration) throws {
        guard !c.alpnProtocols.isEmpty else { return }
        var wire: [UInt8] = []
        for p in c.alpnProtocols {
            wire.append(UInt8(p.utf8.count))
            wire += p.utf8
        }
        switch c.role {
        case .client:
            // Returns 0 on success, unlike most of OpenSSL.
            if SSL_CTX_set_alpn_protos(ctx, wire, UInt32(wire.count)) != 0 {
                throw configurationError("cannot set the ALPN protocols")
            }
        case .server:
            if ccurio_ctx_set_alpn_select(ctx, wire, UInt32(wire.count)) != 1 {
                throw configurationError("cannot set the ALPN protocols")
            }
        }
    }

    private static func configureSessions(_ ctx: OpaquePointer, _ c: TLSConfiguration) {
        switch c.role {
        case .client:
            // Sessions go to this context's cache (by host and port) through
            // the new-session callback, not to OpenSSL's internal one.
            let mode = c.sessionResumption ? SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE : SSL_SESS_CACHE_OFF
            _ = ccurio_ctx_set_session_cache_mode(ctx, Int(mode))
        case .server:
            // Resumed sessions must come from this service (and, with client
            // certificates, OpenSSL refuses to resume without an id context).
            let id: [UInt8] = Array("curio-tls".utf8)
            _ = SSL_CTX_set_session_id_context(ctx, id, UInt32(id.count))
            if c.sessionResumption {
                _ = ccurio_ctx_set_session_cache_mode(ctx, Int(SSL_SESS_CACHE_SERVER))
            } else {
                _ = ccurio_ctx_set_session_cache_mode(ctx, Int(SSL_SESS_CACHE_OFF))
                ccurio_ctx_disable_tickets(ctx)
            }
        }
    }

    // MARK: SNI and sessions

    /// The SNI context serving `name`, if one does.
    fileprivate func sniContext(for name: String) -> OpaquePointer? {
        let name = name.lowercased()
        for e in sniContexts where e.names.contains(where: { serverName(name, matches: $0) }) { return e.ctx }
        return nil
    }

    /// Takes a session for `key` to offer (a reference the caller frees).
    /// A TLS 1.3 session is single-use (RFC 8446 §C.4), so it leaves the cache.
    func takeSession(for key: String) -> OpaquePointer? {
        sessions.withLock { $0.take(key) }?.pointer
    }

    /// Keeps `session` (whose reference this takes over) for `key`.
    func storeSession(_ session: OpaquePointer, for key: String) {
        sessions.withLock { $0.store(SessionHandle(pointer: session), for: key) }
    }
}

/// `*.example.com` matches one label: `a.example.com`, not `example.com`
/// nor `a.b.example.com`.
func serverName(_ name: String, matches pattern: String) -> Bool {
    if pattern.hasPrefix("*.") {
        let suffix = pattern.dropFirst(1)  // ".example.com"
        guard name.hasSuffix(suffix) else { return false }
        let label = name.dropLast(suffix.count)
        return !label.isEmpty && !label.contains(".")
    }
    return name == pattern
}

/// A reference to an SSL_SESSION. SSL_SESSION is reference counted with
/// atomic counts, and a stored session is never modified; the cache hands
/// each user its own reference.
struct SessionHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// Client sessions by host and port, bounded; the oldest go first.
struct SessionCache {
    private var entries: [String: SessionHandle] = [:]
    private var order: [String] = []
    static let limit = 256

    var count: Int { entries.count }

    mutating func take(_ key: String) -> SessionHandle? {
        guard let h = entries[key] else { return nil }
        if SSL_SESSION_get_protocol_version(h.pointer) >= TLS1_3_VERSION_VALUE {
            entries[key] = nil
            order.removeAll { $0 == key }
            return h
        }
        SSL_SESSION_up_ref(h.pointer)
        return h
    }

    mutating func store(_ h: SessionHandle, for key: String) {
        if let old = entries[key] {
            SSL_SESSION_free(old.pointer)
            order.removeAll { $0 == key }
        }
        entries[key] = h
        order.append(key)
        while order.count > Self.limit {
            let k = order.removeFirst()
            if let e = entries.removeValue(forKey: k) { SSL_SESSION_free(e.pointer) }
        }
    }

    mutating func removeAll() {
        for e in entries.values { SSL_SESSION_free(e.pointer) }
        entries.removeAll()
        order.removeAll()
    }
}

/// Switches a server handshake to the certificate serving the client's SNI
/// name, if one does.
private let serverNameCallback: ccurio_servername_cb = { ssl, _, arg in
    guard let ssl, let arg, let raw = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else {
        return SSL_TLSEXT_ERR_OK
    }
    let context = Unmanaged<TLSContext>.fromOpaque(arg).takeUnretainedValue()
    if let chosen = context.sniContext(for: String(cString: raw)) { SSL_set_SSL_CTX(ssl, chosen) }
    return SSL_TLSEXT_ERR_OK
}

/// Keeps a client's new session (after a TLS 1.2 handshake, or a TLS 1.3
/// ticket) in its context, under the connection's host and port.
private let newSessionCallback: @convention(c) (OpaquePointer?, OpaquePointer?) -> Int32 = { ssl, session in
    guard let ssl, let session, let raw = SSL_get_ex_data(ssl, 0) else { return 0 }
    // Set by the connection, which is alive: callbacks run inside its calls.
    let connection = Unmanaged<TLSConnection>.fromOpaque(raw).takeUnretainedValue()
    guard let key = connection.sessionKey else { return 0 }
    connection.context.storeSession(session, for: key)
    return 1
}

#if canImport(Glibc)
import Glibc
#endif
