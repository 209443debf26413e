// curl against the server: plain GETs, HTTP/1.1 forced, bodies, chunked
// uploads from stdin, one connection reused for several URLs, and
// Expect: 100-continue.
import Curio
import CurioHTTP
import HTTPTypes
import Testing

@Suite(.timeLimit(.minutes(2)), .enabled(if: HTTPTest.available("curl")))
struct CurlTests {
    @Test func getAndHTTP11() async throws {
        let (plain, forced, head) = try await HTTPTest.withServer(handler: TestHandlers.echo) { port, _ in
            (try await HTTPTest.command(["curl", "-sS", "http://127.0.0.1:\(port)/a"]),
             try await HTTPTest.command(["curl", "-sS", "--http1.1", "-i", "http://127.0.0.1:\(port)/b?c=d"]),
             try await HTTPTest.command(["curl", "-sS", "-I", "http://127.0.0.1:\(port)/c"]))
        }
        #expect(plain.status == 0, "\(plain.stderr)")
        #expect(plain.stdout == "hello /a\n")
        #expect(forced.stdout.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(forced.stdout.contains("\r\nContent-Length: 13\r\n"))
        #expect(forced.stdout.contains("\r\nDate: "))
        #expect(forced.stdout.hasSuffix("\r\n\r\nhello /b?c=d\n"))
        // HEAD: the length of the GET body, and no body.
        #expect(head.stdout.contains("Content-Length: 9\r\n"))
        #expect(head.stdout.hasSuffix("\r\n\r\n"))
    }

    @Test func postBodies() async throws {
        let big = String(repeating: "0123456789", count: 30_000)
        let (small, large) = try await HTTPTest.withServer(handler: TestHandlers.echo) { port, _ in
            (try await HTTPTest.command(["curl", "-sS", "-d", "name=curio", "http://127.0.0.1:\(port)/form"]),
             try await HTTPTest.command(["curl", "-sS", "--data-binary", "@-", "http://127.0.0.1:\(port)/big"],
                                        input: Array(big.utf8)))
        }
        #expect(small.stdout == "name=curio")
        #expect(large.status == 0, "\(large.stderr)")
        #expect(large.stdout == big)
    }

    @Test func chunkedUploadFromStdin() async throws {
        let payload = String(repeating: "chunky ", count: 20_000)
        let out = try await HTTPTest.withServer(handler: TestHandlers.echo) { port, _ in
            try await HTTPTest.command(["curl", "-sS", "-i", "-T", "-", "http://127.0.0.1:\(port)/upload"],
                                       input: Array(payload.utf8))
        }
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stdout.contains("X-Body-Length: \(payload.utf8.count)\r\n"))
        #expect(out.stdout.hasSuffix(payload))
    }

    @Test func keepAliveReusesOneConnection() async throws {
        let seen = Seen()
        let handler: HTTPHandler = { request in
            seen.add("\(request.remoteAddress.map { "\($0.port)" } ?? "?") \(request.path)")
            return try await TestHandlers.echo(request)
        }
        let out = try await HTTPTest.withServer(handler: handler) { port, _ in
            try await HTTPTest.command(["curl", "-sS", "http://127.0.0.1:\(port)/1", "http://127.0.0.1:\(port)/2",
                                        "http://127.0.0.1:\(port)/3"])
        }
        #expect(out.stdout == "hello /1\nhello /2\nhello /3\n")
        let ports = Set(seen.all.map { $0.split(separator: " ")[0] })
        #expect(seen.all.count == 3)
        #expect(ports.count == 1, "one connection for three URLs: \(seen.all)")
    }

    @Test func expectContinue() async throws {
        let payload = String(repeating: "e", count: 5000)
        let out = try await HTTPTest.withServer(handler: TestHandlers.echo) { port, _ in
            // curl sends Expect: 100-continue for bodies over 1 KiB and
            // prints the interim response with -v; a 10 s expect timeout
            // means only the server's 100 can start the upload in time.
            try await HTTPTest.command(["curl", "-sS", "-v", "--expect100-timeout", "10", "-H", "Expect: 100-continue",
                                        "--data-binary", "@-", "http://127.0.0.1:\(port)/e"], input: Array(payload.utf8))
        }
        #expect(out.status == 0, "\(out.stderr)")
        #expect(out.stderr.contains("HTTP/1.1 100 Continue"))
        #expect(out.stdout == payload)
    }

    @Test func streamedResponseWithTrailers() async throws {
        let out = try await HTTPTest.withServer(handler: TestHandlers.echo) { port, _ in
            try await HTTPTest.command(["curl", "-sS", "-i", "--raw", "http://127.0.0.1:\(port)/stream"])
        }
        #expect(out.stdout.contains("Transfer-Encoding: chunked\r\n"))
        #expect(out.stdout.contains("7\r\npart 0\n\r\n"))
        #expect(out.stdout.hasSuffix("0\r\nX-Parts: 5\r\n\r\n"))
    }
}
