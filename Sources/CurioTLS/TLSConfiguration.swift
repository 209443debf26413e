/// How a TLS client or server behaves: its certificate, whom it trusts,
/// what it verifies, which application protocols it offers. A plain value;
/// ``TLSContext`` turns it into the OpenSSL context connections share.
///
/// ```swift
/// // A client trusting the system's roots, verifying the server's name:
/// let client = try TLSContext(.client())
/// // A server with its certificate, offering HTTP/1.1 over ALPN:
/// let server = try TLSContext(.server(certificateChain: .file("cert.pem"),
///                                     privateKey: .file("key.pem"),
///                                     alpnProtocols: ["http/1.1"]))
/// ```
public struct TLSConfiguration: Sendable, Hashable {
    /// Which side of the handshake a context is for.
    public enum Role: Sendable, Hashable {
        /// Connects, verifies the server.
        case client
        /// Accepts, presents a certificate.
        case server
    }

    /// PEM data: a file or the text itself.
    public enum PEM: Sendable, Hashable {
        /// A PEM file (for a chain: the leaf first, then intermediates).
        case file(String)
        /// PEM text in memory.
        case text(String)
    }

    /// Where trusted root certificates come from.
    public enum TrustRoots: Sendable, Hashable {
        /// OpenSSL's default locations: the system store
        /// (/etc/ssl/certs on Debian), or `SSL_CERT_FILE` / `SSL_CERT_DIR`.
        case system
        /// A PEM bundle of CA certificates.
        case file(String)
        /// A directory of hashed CA certificates (`openssl rehash`).
        case directory(String)
        /// CA certificates as PEM text.
        case pem(String)
    }

    /// What a client checks of the server's certificate.
    public enum CertificateVerification: Sendable, Hashable {
        /// The chain must lead to a trusted root and name the host
        /// connected to (DNS name or IP address). The default.
        case fullVerification
        /// The chain must lead to a trusted root; any name is accepted.
        case noHostnameVerification
        /// Nothing is checked: anyone can impersonate the server. For
        /// tests and pinned setups only.
        case none
    }

    /// Whether a server asks clients for certificates.
    public enum ClientCertificates: Sendable, Hashable {
        /// Not asked for. The default.
        case none
        /// Asked for; a client without one is accepted, a client with an
        /// untrusted one is refused.
        case optional
        /// Required: a client without a trusted certificate is refused.
        case required
    }

    /// The protocol versions CurioTLS speaks: 1.2 and 1.3, nothing older.
    public enum Version: Sendable, Hashable, Comparable {
        /// TLS 1.2 (RFC 5246).
        case v1_2
        /// TLS 1.3 (RFC 8446).
        case v1_3
        var raw: Int32 { self == .v1_2 ? TLS1_2_VERSION_VALUE : TLS1_3_VERSION_VALUE }
    }

    /// Another certificate a server presents to clients asking for one of
    /// `serverNames` through SNI; `*.example.com` matches one label.
    public struct SNICertificate: Sendable, Hashable {
        /// The names this certificate serves (compared without case).
        public var serverNames: [String]
        /// Its chain, leaf first.
        public var certificateChain: PEM
        /// Its private key.
        public var privateKey: PEM
        /// A certificate for `serverNames`.
        public init(serverNames: [String], certificateChain: PEM, privateKey: PEM) {
            self.serverNames = serverNames
            self.certificateChain = certificateChain
            self.privateKey = privateKey
        }
    }

    /// Client or server.
    public var role: Role
    /// This side's certificate chain: required for a server, optional for
    /// a client (a client certificate).
    public var certificateChain: PEM?
    /// The private key of ``certificateChain``.
    public var privateKey: PEM?
    /// The roots that verify the peer: the server's certificate (clients)
    /// or clients' certificates (servers asking for them).
    public var trustRoots: TrustRoots
    /// What a client verifies; ignored by servers (see ``clientCertificates``).
    public var certificateVerification: CertificateVerification
    /// Whether a server asks for client certificates; ignored by clients.
    public var clientCertificates: ClientCertificates
    /// ALPN protocols in preference order ("h2", "http/1.1"). A client
    /// offers them; a server picks the first of its own list the client
    /// offers, and refuses a client offering none of them. Empty: no ALPN.
    public var alpnProtocols: [String]
    /// The oldest version accepted (TLS 1.2 by default).
    public var minimumVersion: Version
    /// The newest version accepted (TLS 1.3 by default).
    public var maximumVersion: Version
    /// Extra server certificates chosen by SNI (servers only); clients
    /// naming none of them get ``certificateChain``.
    public var sniCertificates: [SNICertificate]
    /// Session resumption: clients keep sessions per host and port in their
    /// context and offer them again; servers issue session tickets.
    public var sessionResumption: Bool
    /// A peer closing the TCP connection without a close_notify ends the
    /// stream quietly (reads return end of stream) instead of throwing
    /// ``TLSError/Kind/unexpectedEOF``. Off by default: such an end cannot be
    /// told from a truncation attack unless the protocol above frames its
    /// messages (HTTP with Content-Length or chunked bodies does).
    public var allowsEOFWithoutCloseNotify: Bool

    /// A configuration for `role` with everything at its default.
    public init(role: Role) {
        self.role = role
        certificateChain = nil
        privateKey = nil
        trustRoots = .system
        certificateVerification = .fullVerification
        clientCertificates = .none
        alpnProtocols = []
        minimumVersion = .v1_2
        maximumVersion = .v1_3
        sniCertificates = []
        sessionResumption = true
        allowsEOFWithoutCloseNotify = false
    }

    /// A client configuration: verifies the server against `trustRoots`
    /// (the system store by default) and its name.
    public static func client(trustRoots: TrustRoots = .system,
                              certificateVerification: CertificateVerification = .fullVerification,
                              alpnProtocols: [String] = [],
                              certificateChain: PEM? = nil, privateKey: PEM? = nil) -> TLSConfiguration {
        var c = TLSConfiguration(role: .client)
        c.trustRoots = trustRoots
        c.certificateVerification = certificateVerification
        c.alpnProtocols = alpnProtocols
        c.certificateChain = certificateChain
        c.privateKey = privateKey
        return c
    }

    /// A server configuration with its certificate chain and key.
    /// `trustRoots` verify client certificates when `clientCertificates`
    /// asks for them.
    public static func server(certificateChain: PEM, privateKey: PEM,
                              clientCertificates: ClientCertificates = .none,
                              trustRoots: TrustRoots = .system,
                              alpnProtocols: [String] = [],
                              sniCertificates: [SNICertificate] = []) -> TLSConfiguration {
        var c = TLSConfiguration(role: .server)
        c.certificateChain = certificateChain
        c.privateKey = privateKey
        c.clientCertificates = clientCertificates
        c.trustRoots = trustRoots
        c.alpnProtocols = alpnProtocols
        c.sniCertificates = sniCertificates
        return c
    }
}

// The OpenSSL version numbers (TLS1_2_VERSION is a macro Swift imports,
// but spelling the values keeps the enum independent of the header).
let TLS1_2_VERSION_VALUE: Int32 = 0x0303
let TLS1_3_VERSION_VALUE: Int32 = 0x0304
