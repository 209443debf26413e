import Curio
import Logging

/// Opens a TCP connection (as Curio's `openConnection`, happy eyeballs
/// included), runs a TLS client handshake over it and returns the stream.
/// `serverName` (default: `host`) goes out as SNI and is what the server's
/// certificate must name. Sessions are kept in `context` under
/// "serverName:port", so a second connection resumes the first's session.
///
/// ```swift
/// let client = try TLSContext(.client(alpnProtocols: ["http/1.1"]))
/// let conn = try await openConnection(host: "example.com", port: 443, tls: client)
/// try await conn.write("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
/// let status = try await conn.readLine()
/// ```
///
/// The handshake is a Curio blocking call: wrap it in `timeoutAfter(_:_:)`
/// to bound it. On any failure the socket is closed.
public func openConnection(host: String, port: Int, tls context: TLSContext, serverName: String? = nil,
                           happyEyeballsDelay: Double = 0.25, file: StaticString = #filePath, line: UInt = #line,
                           function: StaticString = #function) async throws -> SocketStream {
    let plain = try await Curio.openConnection(host: host, port: port, happyEyeballsDelay: happyEyeballsDelay,
                                               file: file, line: line, function: function)
    guard let socket = plain.socket else {
        plain.close()
        throw CurioUsageError(.invalidArgument, "openConnection did not return a socket")
    }
    let name = serverName ?? host
    let conn = try await TLSConnection.connect(over: socket, context: context, serverName: name,
                                               sessionKey: "\(name):\(port)", file: file, line: line,
                                               function: function)
    return SocketStream(conn)
}

/// Serves TLS clients with `handler`, each in its own task with its own
/// stream (closed, with close_notify, when the handler ends), until
/// cancelled — Curio's `tcpServer` with a handshake in front.
///
/// Each client's handshake runs in that client's task, bounded by
/// `handshakeTimeout` seconds (nil: unbounded), so a slow or hostile client
/// never holds up the accept loop or other clients. A failed handshake
/// (wrong certificate, plaintext, truncation, timeout) closes that client
/// only and is reported to `onHandshakeFailure`, or without one logged at
/// notice level on the kernel's `configuration.logger` (stderr by default).
/// A client that disconnects without close_notify ends its handler's reads
/// with ``TLSError/Kind/unexpectedEOF``, which the server treats, like a
/// reset, as the client going away.
///
/// ```swift
/// let server = try TLSContext(.server(certificateChain: .file("cert.pem"), privateKey: .file("key.pem")))
/// try await tcpServer(host: "", port: 8443, tls: server) { client, addr in
///     for try await line in client { try await client.write(line) }
/// }
/// ```
public func tcpServer(host: String, port: Int, tls context: TLSContext, reusePort: Bool = false,
                      backlog: Int = 128, handshakeTimeout: Double? = 10, ready: TCPListener? = nil,
                      onHandshakeFailure: (@Sendable (any Error, SocketAddress) async -> Void)? = nil,
                      handler: @escaping @Sendable (SocketStream, SocketAddress) async throws -> Void) async throws {
    guard context.configuration.role == .server else {
        throw TLSError(.configuration, "tcpServer(tls:) needs a server context", operation: "tcpServer")
    }
    try await Curio.tcpServer(host: host, port: port, reusePort: reusePort, backlog: backlog, ready: ready) { plain, peer in
        guard let socket = plain.socket else { return }
        let conn: TLSConnection
        do {
            conn = try await acceptTLS(socket, context, timeout: handshakeTimeout)
        } catch let e as TaskCancelled {
            throw e  // the server is stopping
        } catch let e as TimeoutCancellationError {
            throw e  // an enclosing deadline passed
        } catch {
            if let onHandshakeFailure {
                await onHandshakeFailure(error, peer)
            } else {
                reportHandshakeFailure(error, peer)
            }
            return
        }
        let stream = SocketStream(conn)
        defer { stream.close() }
        do {
            try await handler(stream, peer)
        } catch let e as TLSError where e.kind == .unexpectedEOF {
            // The client went away without close_notify.
        }
    }
}

/// The server handshake, bounded by `timeout`: a timeout becomes a
/// ``TLSError/Kind/handshakeFailed`` that names it. Package-wide so
/// CurioHTTPS's servers handshake exactly as `tcpServer(tls:)` does.
package func acceptTLS(_ socket: Socket, _ context: TLSContext, timeout: Double?) async throws -> TLSConnection {
    guard let timeout else { return try await TLSConnection.accept(over: socket, context: context) }
    do {
        return try await curioTimeoutAfter(timeout) { try await TLSConnection.accept(over: socket, context: context) }
    } catch is TaskTimeout {
        throw TLSError(.handshakeFailed, "the client did not complete the handshake within \(timeout) s",
                       operation: "handshake with a client")
    }
}

/// Logs a failed server handshake where the kernel sends its own
/// diagnostics (``Kernel/Configuration/logger``, stderr by default), at
/// notice level: scanners and broken clients make these routine.
package func reportHandshakeFailure(_ error: any Error, _ peer: SocketAddress) {
    let message: Logger.Message = "TLS handshake with \(peer) failed: \(error)"
    if let kernel = Kernel.current {
        kernel.configuration.logger.notice(message, metadata: ["peer": "\(peer)"])
    } else {
        var line = "curio-tls: \(message)\n"
        line.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
