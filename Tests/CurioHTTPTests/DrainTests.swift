// Graceful drain: idle keep-alive connections close at once, a request in
// flight finishes (its response says Connection: close), and new
// connections are no longer accepted.
import Curio
import CurioHTTP
import HTTPTypes
import Testing

@Suite(.timeLimit(.minutes(2)))
struct DrainTests {
    @Test func idleConnectionsCloseAtOnce() async throws {
        // An idle timeout far beyond the test's limit: only the drain can
        // close these connections in time.
        var config = HTTPServerConfiguration()
        config.idleTimeout = 3600
        let result = try await HTTPTest.withServer(config, handler: TestHandlers.echo) { port, server in
            var clients: [SocketStream] = []
            for i in 0..<3 {
                let s = try await HTTPTest.connect(port)
                try await s.write("GET /\(i) HTTP/1.1\r\nHost: a\r\n\r\n")
                _ = try await HTTPTest.readResponse(s)
                clients.append(s)
            }
            let before = server.openConnections
            try await server.drain()
            var eofs = 0
            for s in clients {
                if try await s.read(1).isEmpty { eofs += 1 }
                s.close()
            }
            return (before, server.openConnections, eofs)
        }
        #expect(result.0 == 3)
        #expect(result.1 == 0)
        #expect(result.2 == 3)
    }

    @Test func inFlightRequestFinishes() async throws {
        let entered = Event()
        let release = Event()
        let handler: HTTPHandler = { request in
            if request.path == "/slow" {
                await entered.set()
                try await release.wait()
            }
            return HTTPServerResponse(body: .string("done \(request.path)\n"))
        }
        let result = try await HTTPTest.withServer(handler: handler) { port, server in
            let s = try await HTTPTest.connect(port)
            defer { s.close() }
            try await s.write("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            try await entered.wait()
            let draining = try await spawn(name: "drain") { try await server.drain() }
            // The drain has stopped accepting and waits for the request.
            while draining.state != .eventWait { try await Curio.sleep(0) }
            var refused = false
            do {
                // Refused, unless a suite running in parallel has bound the
                // port number this listener just gave up: then that server
                // answers (or closes). Only this listener, left open with
                // nobody accepting, would leave the request unanswered.
                let late = try await HTTPTest.connect(port)
                defer { late.close() }
                try await late.write("GET /late HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                refused = try await ignoreAfter(10) { _ = try await late.read(1); return true } ?? false
            } catch is SocketError {
                refused = true
            }
            await release.set()
            let r = try await HTTPTest.readResponse(s)
            let closed = try await s.read(1).isEmpty
            _ = try await draining.join()
            return (r.text, r.header("Connection"), closed, refused)
        }
        #expect(result.0 == "done /slow\n")
        #expect(result.1 == "close")
        #expect(result.2)
        #expect(result.3, "no new connection after the drain began")
    }

    @Test func cancellingRunClosesEveryConnection() async throws {
        let entered = Event()
        let handler: HTTPHandler = { request in
            if request.path == "/hang" {
                await entered.set()
                try await Curio.sleep(3600)
            }
            return HTTPServerResponse(body: .string("ok"))
        }
        let result = try await HTTPTest.kernel {
            let server = HTTPServer(host: "127.0.0.1", port: 0, handler: handler)
            let serving = try await spawn(name: "server") { try await server.run() }
            let port = try await server.localAddress().port
            let idle = try await HTTPTest.connect(port)
            defer { idle.close() }
            try await idle.write("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            _ = try await HTTPTest.readResponse(idle)
            let busy = try await HTTPTest.connect(port)
            defer { busy.close() }
            try await busy.write("GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
            try await entered.wait()
            try await serving.cancel()
            let idleClosed = try await idle.read(1).isEmpty
            let busyClosed = try await busy.read(1).isEmpty
            return (idleClosed, busyClosed, server.openConnections, serving.terminated)
        }
        #expect(result.0)
        #expect(result.1)
        #expect(result.2 == 0)
        #expect(result.3)
    }
}
