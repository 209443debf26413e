// The helpers shared by the CurioTLS tests, under `TLSTest`: kernels on
// threads of their own (as Tests/CurioTests/Harness/KernelHarness.swift,
// whose small thread helpers are repeated here since that harness is
// internal to CurioTests), certificates generated once per test process
// with the `openssl` CLI, a TLS server under test that reports its failed
// handshakes on a queue, and descriptor counting. Steps are ordered by what
// peers report (a line read, a failure queued), never by sleeping.
import Curio
import CurioTestSupport
import CurioTLS
import Glibc
import Synchronization
import Testing

enum TLSTest {
    /// A failure of a test step.
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    // MARK: Kernels on their own threads

    /// Runs `body` as the main task of a new kernel on a thread of its own,
    /// with a deadline inside the kernel (`limit`) so a hang fails instead
    /// of hanging; returns what `body` returns.
    static func run<T: Sendable>(limit: Double = 30, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await onThread(limit: limit + 15) {
            try Curio.run { try await timeoutAfter(limit) { try await body() } }
        }
    }

    /// The same on a kernel the test configured; shut down afterwards.
    static func run<T: Sendable>(kernel: Kernel, limit: Double = 30,
                                 _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await onThread(limit: limit + 15) {
            let result = Result { try kernel.run { try await timeoutAfter(limit) { try await body() } } }
            try kernel.shutdown()
            return try result.get()
        }
    }

    private static func onThread<T: Sendable>(limit: Double, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await TestThreads.onThread(limit: limit, body)
    }

    // MARK: Certificates

    /// The certificates of the tests, made once per process in a temporary
    /// directory: a CA, server certificates (good, expired, for the wrong
    /// host, for SNI names), a client certificate, and a second CA with a
    /// certificate of its own.
    final class Certificates: Sendable {
        let directory: String
        init() throws {
            var template = Array("/tmp/curio-tls-XXXXXX".utf8CString)
            guard let p = mkdtemp(&template) else { throw Failure("mkdtemp failed") }
            directory = String(cString: p)
            let script = directory + "/make-certificates.sh"
            guard let f = fopen(script, "we") else { throw Failure("cannot write \(script)") }
            fputs(TLSTest.certificateScript, f)
            fclose(f)
            let status = try TLSTest.runSync(["/bin/sh", "-c", "cd '\(directory)' && sh make-certificates.sh > make.log 2>&1"])
            guard status == 0 else {
                throw Failure("making the test certificates failed (status \(status)); see \(directory)/make.log")
            }
            // The directory goes when the test process ends.
            TLSTest.certificateDirectory.withLock { $0 = directory }
            atexit {
                if let dir = TLSTest.certificateDirectory.withLock({ $0 }) { TLSTest.removeFlatDirectory(dir) }
            }
        }
        func path(_ name: String) -> String { directory + "/" + name }
        func chain(_ name: String) -> TLSConfiguration.PEM { .file(path(name + ".pem")) }
        func key(_ name: String) -> TLSConfiguration.PEM { .file(path(name + ".key")) }
        func text(_ name: String) throws -> String {
            guard let f = fopen(path(name), "re") else { throw Failure("cannot read \(name)") }
            defer { fclose(f) }
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = fread(&buf, 1, buf.count, f)
                if n == 0 { break }
                out += buf[0..<n]
            }
            return String(decoding: out, as: UTF8.self)
        }
    }

    private static let made = Result { try Certificates() }
    fileprivate static let certificateDirectory = Mutex<String?>(nil)

    /// Removes `path` and the files directly inside it.
    fileprivate static func removeFlatDirectory(_ path: String) {
        guard let dir = opendir(path) else { return }
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { unlink(path + "/" + name) }
        }
        closedir(dir)
        rmdir(path)
    }
    /// The certificates (made on first use).
    static func certificates() throws -> Certificates { try made.get() }

    /// Makes the certificates with `openssl`: `openssl ca` signs each, so
    /// the expired one gets explicit past -startdate/-enddate.
    static let certificateScript = #"""
    set -e
    key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
    key ca.key
    openssl req -x509 -new -key ca.key -out ca.pem -days 3650 -subj "/CN=Curio Test CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    key other-ca.key
    openssl req -x509 -new -key other-ca.key -out other-ca.pem -days 3650 -subj "/CN=Other Test CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    cat > ca.cnf <<'CNF'
    [ ca ]
    default_ca = test
    [ test ]
    database = index.txt
    new_certs_dir = .
    serial = serial
    default_md = sha256
    policy = anything
    unique_subject = no
    [ anything ]
    commonName = supplied
    CNF
    : > index.txt
    echo 1000 > serial
    sign() { # name common-name subjectAltName extendedKeyUsage [ca] [start end]
        key "$1.key"
        openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2"
        printf "subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=%s\n" "$3" "$4" > "$1.ext"
        ca=${5:-ca}
        if [ -n "$6" ]; then dates="-startdate $6 -enddate $7"; else dates="-days 3650"; fi
        openssl ca -batch -notext -config ca.cnf -cert "$ca.pem" -keyfile "$ca.key" -in "$1.csr" \
            -out "$1.pem" $dates -extfile "$1.ext"
    }
    sign server localhost "DNS:localhost,IP:127.0.0.1" serverAuth
    sign expired localhost "DNS:localhost,IP:127.0.0.1" serverAuth ca 20200101000000Z 20200201000000Z
    sign wronghost other.example "DNS:other.example" serverAuth
    sign alt alt.example "DNS:alt.example,DNS:*.wild.example" serverAuth
    sign client curio-client "DNS:curio-client" clientAuth
    sign stranger localhost "DNS:localhost,IP:127.0.0.1" serverAuth,clientAuth other-ca
    echo done
    """#

    /// Runs a program to its end, without a kernel (setup only) → its status.
    static func runSync(_ argv: [String]) throws -> Int32 {
        let cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], nil, nil, cargs, environ)
        guard rc == 0 else { throw Failure("posix_spawn \(argv[0]) failed: \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    // MARK: Contexts

    /// A server context with `cert` (a name of `Certificates`).
    static func server(_ cert: String = "server", clientCertificates: TLSConfiguration.ClientCertificates = .none,
                       alpn: [String] = [], sni: [TLSConfiguration.SNICertificate] = [],
                       configure: (inout TLSConfiguration) -> Void = { _ in }) throws -> TLSContext {
        let c = try certificates()
        var config = TLSConfiguration.server(certificateChain: c.chain(cert), privateKey: c.key(cert),
                                             clientCertificates: clientCertificates,
                                             trustRoots: .file(c.path("ca.pem")), alpnProtocols: alpn,
                                             sniCertificates: sni)
        configure(&config)
        return try TLSContext(config)
    }

    /// A client context trusting the test CA (or `ca`), with an optional
    /// client certificate.
    static func client(ca: String = "ca", alpn: [String] = [], cert: String? = nil,
                       configure: (inout TLSConfiguration) -> Void = { _ in }) throws -> TLSContext {
        let c = try certificates()
        var config = TLSConfiguration.client(trustRoots: .file(c.path(ca + ".pem")), alpnProtocols: alpn,
                                             certificateChain: cert.map { c.chain($0) },
                                             privateKey: cert.map { c.key($0) })
        configure(&config)
        return try TLSContext(config)
    }

    // MARK: The server under test

    /// A Curio TLS server on 127.0.0.1 and an ephemeral port. Its failed
    /// handshakes arrive on `failures` (as TLSErrors or other errors).
    final class Server: @unchecked Sendable {
        let port: Int
        let task: CurioTask<Void>
        let failures: Queue<any Error>
        init(port: Int, task: CurioTask<Void>, failures: Queue<any Error>) {
            self.port = port
            self.task = task
            self.failures = failures
        }
        func stop() async throws { try await task.cancel() }
        /// The next failed handshake.
        func nextFailure() async throws -> any Error { try await failures.get() }
    }

    static func startServer(_ context: TLSContext, handshakeTimeout: Double? = 10,
                            handler: @escaping @Sendable (SocketStream, SocketAddress) async throws -> Void = echo)
        async throws -> Server {
        let listener = TCPListener()
        let failures = Queue<any Error>()
        let task = try await spawn(name: "tls-server") {
            try await tcpServer(host: "127.0.0.1", port: 0, tls: context, handshakeTimeout: handshakeTimeout,
                                ready: listener, onHandshakeFailure: { error, _ in try? await failures.put(error) },
                                handler: handler)
        }
        let address = try await listener.wait()
        return Server(port: address.port, task: task, failures: failures)
    }

    /// Echoes lines until the client's close_notify.
    @Sendable static func echo(_ client: SocketStream, _ peer: SocketAddress) async throws {
        for try await line in client { try await client.write(line) }
    }

    /// A Curio TLS client connection to the server under test.
    static func connect(_ port: Int, _ context: TLSContext, serverName: String = "localhost") async throws -> SocketStream {
        try await openConnection(host: "127.0.0.1", port: port, tls: context, serverName: serverName)
    }

    /// A plain TCP connection to 127.0.0.1:`port`.
    static func plainConnect(_ port: Int) async throws -> Socket {
        let s = try Socket(.inet, .stream)
        try await s.connect(("127.0.0.1", port))
        return s
    }

    // MARK: Errors

    /// `error` as a TLSError, or a test failure naming what it was.
    static func tlsError(_ error: (any Error)?) throws -> TLSError {
        guard let e = error as? TLSError else { throw Failure("expected a TLSError, got \(String(describing: error))") }
        return e
    }

    /// The error `body` throws (nil when it returns).
    static func error(_ body: () async throws -> Void) async -> (any Error)? {
        do {
            try await body()
            return nil
        } catch {
            return error
        }
    }

    static func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
    static func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

    /// `count` bytes of a recognizable pattern.
    static func pattern(_ count: Int, seed: UInt32 = 1) -> [UInt8] {
        var x = seed &* 2_654_435_761
        return (0..<count).map { _ in
            x = x &* 1_103_515_245 &+ 12345
            return UInt8(truncatingIfNeeded: x >> 16)
        }
    }

    // MARK: Descriptors

    /// Descriptors of this process that are TCP sockets with `port` at
    /// either end (from /proc/self/fd and /proc/net/tcp{,6}); other tests'
    /// sockets running meanwhile do not count.
    static func socketsOnPort(_ port: Int) -> Int {
        var inodes = Set<String>()
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let f = fopen(table, "re") else { continue }
            defer { fclose(f) }
            var line: UnsafeMutablePointer<CChar>?
            var cap = 0
            defer { free(line) }
            while getline(&line, &cap, f) > 0 {
                let fields = String(cString: line!).split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count > 9, fields[0] != "sl" else { continue }
                let ports = [fields[1], fields[2]].compactMap { $0.split(separator: ":").last.flatMap { Int($0, radix: 16) } }
                if ports.contains(port) { inodes.insert(String(fields[9])) }
            }
        }
        var n = 0
        guard let dir = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(dir) }
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard Int32(name) != nil else { continue }
            var buf = [CChar](repeating: 0, count: 128)
            let len = readlink("/proc/self/fd/" + name, &buf, buf.count - 1)
            guard len > 0 else { continue }
            let target = String(decoding: buf[0..<len].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if target.hasPrefix("socket:["), inodes.contains(String(target.dropFirst(8).dropLast())) { n += 1 }
        }
        return n
    }

    // MARK: Peer programs

    /// Reads `stream` until a line satisfies `match` → that line; throws
    /// with everything read when the stream ends first.
    static func lineMatching(_ stream: SocketStream, _ what: String, _ match: (String) -> Bool) async throws -> String {
        var seen = ""
        while true {
            let line = try await stream.readLine()
            if line.isEmpty { throw Failure("no line \(what) in the output:\n\(seen)") }
            let s = text(line)
            seen += s
            if match(s) { return s.trimmingTrailingNewline }
        }
    }
}

extension String {
    var trimmingTrailingNewline: String {
        var s = self
        while s.hasSuffix("\n") || s.hasSuffix("\r") { s.removeLast() }
        return s
    }
}
