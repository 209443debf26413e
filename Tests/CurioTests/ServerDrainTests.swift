// Servers own their connection handlers (issue 13, rule 11) and drain
// (issue 9, section 4): cancelling tcpServer / unixServer / a SocketServer
// cancels every handler, waits for it and closes its connection before
// cancel() returns; a drain stops accepting, lets in-flight handlers finish
// for the grace period, then cancels the rest. Steps are ordered by what
// the peers see (lines, end-of-file) and by task states, never by sleeps.
import Glibc
import Testing

@testable import Curio

/// A handler that greets, then waits until the client goes away.
final class DrainTestIdleHandler: StreamRequestHandler {
    override func handle() async throws {
        try await wfile.write("hi\n")
        _ = try await rfile.readAll()
    }
}

/// The connection's peer state seen from the client: "open", "eof".
private func peerState(_ s: SocketStream) -> String {
    guard let fd = s.socket?.fd else { return "no socket" }
    var b: UInt8 = 0
    let n = Glibc.recv(fd, &b, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
    if n == 0 { return "eof" }
    if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return "open" }
    return n > 0 ? "data" : "error \(errno)"
}

@Suite(.timeLimit(.minutes(1)))
struct ServerDrainTests {
    /// Rule 11: cancel() of a tcpServer task returns only after its idle
    /// handler has been cancelled and its connection closed.
    @Test(.timeLimit(.minutes(1)))
    func cancellingATCPServerCancelsItsHandlers() async throws {
        let r = try await IOTest.run { () -> [String] in
            let log = KernelHarness.Log()
            let listener = TCPListener()
            let server = try await spawn {
                try await tcpServer(host: "127.0.0.1", port: 0, ready: listener) { client, _ in
                    try await client.write("hi\n")
                    do {
                        _ = try await client.readAll()
                    } catch {
                        log.add("handler: \(KernelHarness.kind(error))")
                        throw error
                    }
                }
            }
            let addr = try await listener.wait()
            let c = try await openConnection(host: "127.0.0.1", port: addr.port)
            defer { c.close() }
            _ = try await c.readLine()
            log.add("before cancel: \(peerState(c))")
            try await server.cancel()
            log.add("after cancel: \(peerState(c))")
            return log.entries
        }
        #expect(r == ["before cancel: open", "handler: TaskCancelled", "after cancel: eof"])
    }

    /// Rule 11 for the SocketServer classes.
    @Test(.timeLimit(.minutes(1)))
    func cancellingServeForeverCancelsItsHandlers() async throws {
        let r = try await IOTest.run { () -> [String] in
            let serv = try TCPServer(("127.0.0.1", 0), DrainTestIdleHandler.self)
            let port = try serv.serverAddress.port
            let server = try await spawn { try await serv.serveForever() }
            let c = try await openConnection(host: "127.0.0.1", port: port)
            defer { c.close() }
            _ = try await c.readLine()
            let before = peerState(c)
            try await server.cancel()
            return [before, peerState(c)]
        }
        #expect(r == ["open", "eof"])
    }

    /// A drain with a long grace: new clients are refused at once, an
    /// in-flight handler finishes its work normally, and the drain ends as
    /// soon as the last handler has ended (not after the grace).
    @Test(.timeLimit(.minutes(1)))
    func aDrainLetsInFlightHandlersFinish() async throws {
        let r = try await IOTest.run { () -> [String] in
            let log = KernelHarness.Log()
            let listener = TCPListener()
            let server = try await spawn { () -> String in
                try await tcpServer(host: "127.0.0.1", port: 0, ready: listener) { client, _ in
                    try await client.write("hi\n")
                    let req = try await client.readLine()
                    try await client.write("done " + String(decoding: req, as: UTF8.self))
                    log.add("handler finished")
                }
                return "server returned"
            }
            let addr = try await listener.wait()
            let c = try await openConnection(host: "127.0.0.1", port: addr.port)
            defer { c.close() }
            _ = try await c.readLine()
            let drainer = try await spawn { try await listener.drain(grace: 1000) }
            // Accepting stops, then the server waits for its handlers.
            try await IOTest.waitBlocked(server, .taskJoin)
            try await IOTest.waitBlocked(drainer, .eventWait)
            let refused = await IOTest.error { _ = try await openConnection(host: "127.0.0.1", port: addr.port) }
            log.add("new client: \(IOTest.kind(refused))")
            try await c.write("req\n")
            log.add("client got: " + IOTest.text(try await c.readLine()).filter { $0 != "\n" })
            try await drainer.join()
            log.add(try await server.join() ?? "nil")
            return log.entries
        }
        #expect(r == ["new client: SocketError(ECONNREFUSED)", "handler finished", "client got: done req",
                      "server returned"])
    }

    /// A drain with no grace: an idle keep-alive client is cancelled and
    /// its connection closed; the server returns normally.
    @Test(.timeLimit(.minutes(1)))
    func aDrainCancelsIdleHandlersAfterTheGrace() async throws {
        let r = try await IOTest.run { () -> [String] in
            let log = KernelHarness.Log()
            let listener = TCPListener()
            let server = try await spawn { () -> String in
                try await tcpServer(host: "127.0.0.1", port: 0, ready: listener) { client, _ in
                    try await client.write("hi\n")
                    do { _ = try await client.readAll() } catch {
                        log.add("idle handler: \(KernelHarness.kind(error))")
                        throw error
                    }
                }
                return "server returned"
            }
            let addr = try await listener.wait()
            let c = try await openConnection(host: "127.0.0.1", port: addr.port)
            defer { c.close() }
            _ = try await c.readLine()
            try await listener.drain(grace: .zero)
            log.add("drained; client sees \(peerState(c))")
            log.add(try await server.join() ?? "nil")
            return log.entries
        }
        #expect(r == ["idle handler: TaskCancelled", "drained; client sees eof", "server returned"])
    }

    /// A drain started from a plain thread and one awaited from a Swift
    /// task on another executor both reach the server's kernel.
    @Test(.timeLimit(.minutes(1)))
    func aDrainCanStartFromAnotherThreadOrExecutor() async throws {
        for fromThread in [true, false] {
            let r = try await IOTest.run { () -> [String] in
                let listener = TCPListener()
                let server = try await spawn { () -> String in
                    try await tcpServer(host: "127.0.0.1", port: 0, ready: listener) { _, _ in }
                    return "server returned"
                }
                _ = try await listener.wait()
                let outside = UniversalResult<String>()
                if fromThread {
                    KernelHarness.startThread {
                        do { try listener.beginDrain(grace: 0); try outside.set("begun") } catch { try? outside.setError(error) }
                    }
                } else {
                    Task.detached {
                        do { try await listener.drain(grace: 0); try outside.set("drained") } catch { try? outside.setError(error) }
                    }
                }
                let server_ = try await server.join() ?? "nil"
                return [try await outside.get(), server_]
            }
            #expect(r == [fromThread ? "begun" : "drained", "server returned"])
        }
    }

    /// SocketServer.drain, and a grace that is not a number of seconds.
    @Test(.timeLimit(.minutes(1)))
    func aSocketServerDrains() async throws {
        let r = try await IOTest.run { () -> [String] in
            let serv = try TCPServer(("127.0.0.1", 0), DrainTestIdleHandler.self)
            let port = try serv.serverAddress.port
            let server = try await spawn { try await serv.serveForever() }
            let c = try await openConnection(host: "127.0.0.1", port: port)
            defer { c.close() }
            _ = try await c.readLine()
            var out: [String] = []
            out.append(IOTest.kind(await IOTest.error { try await serv.drain(grace: -1) }))
            try await serv.drain(grace: 0)
            out.append("draining \(serv.isDraining); client sees \(peerState(c))")
            try await server.join()
            out.append("served")
            return out
        }
        #expect(r == ["CurioUsageError.invalidTimeout", "draining true; client sees eof", "served"])
    }

    /// waitStoppedAccepting(): once it returns after beginDrain, a new
    /// client is refused while the in-flight one is still served, also
    /// when drain() is called after beginDrain(); once the
    /// server has ended it returns at once. TCPListener and SocketServer.
    @Test(.timeLimit(.minutes(1)))
    func waitStoppedAcceptingReturnsOnceNewClientsAreRefused() async throws {
        let r = try await IOTest.run { () -> [String] in
            var out: [String] = []
            let listener = TCPListener()
            let server = try await spawn {
                try await tcpServer(host: "127.0.0.1", port: 0, ready: listener) { client, _ in
                    try await client.write("hi\n")
                    let req = try await client.readLine()
                    try await client.write("done " + String(decoding: req, as: UTF8.self))
                }
            }
            let addr = try await listener.wait()
            let c = try await openConnection(host: "127.0.0.1", port: addr.port)
            defer { c.close() }
            _ = try await c.readLine()
            try listener.beginDrain(grace: 1000)
            try await listener.waitStoppedAccepting()
            let refused = await IOTest.error { _ = try await openConnection(host: "127.0.0.1", port: addr.port) }
            out.append("new client: \(IOTest.kind(refused))")
            // drain() after beginDrain(): the same drain, waited for (a second
            // request once ended the drain as a failure of the server).
            let drainer = try await spawn { try await listener.drain(grace: 1000) }
            try await IOTest.waitBlocked(drainer, .eventWait)
            try await c.write("req\n")
            out.append("in flight: " + IOTest.text(try await c.readLine()).filter { $0 != "\n" })
            try await drainer.join()
            try await server.join()
            try await listener.waitStoppedAccepting()
            out.append("after the end: returns")

            let serv = try TCPServer(("127.0.0.1", 0), DrainTestIdleHandler.self)
            let port = try serv.serverAddress.port
            let served = try await spawn { try await serv.serveForever() }
            let d = try await openConnection(host: "127.0.0.1", port: port)
            defer { d.close() }
            _ = try await d.readLine()
            // From a Swift task on another executor.
            try await Task.detached {
                try serv.beginDrain(grace: 1000)
                try await serv.waitStoppedAccepting()
            }.value
            let refused2 = await IOTest.error { _ = try await openConnection(host: "127.0.0.1", port: port) }
            out.append("socket server: \(IOTest.kind(refused2)), client sees \(peerState(d))")
            d.close()
            try await served.join()
            return out
        }
        #expect(r == ["new client: SocketError(ECONNREFUSED)", "in flight: done req", "after the end: returns",
                      "socket server: SocketError(ECONNREFUSED), client sees open"])
    }
}
