// A short, bounded wrk load: every request answered, none with an error.
import Curio
import CurioHTTP
import HTTPTypes
import Testing

@Suite(.timeLimit(.minutes(1)), .enabled(if: HTTPTest.available("wrk")))
struct WrkTests {
    @Test func shortLoadWithoutErrors() async throws {
        let out = try await HTTPTest.withServer(handler: TestHandlers.echo) { port, _ in
            try await HTTPTest.command(["wrk", "-t1", "-c16", "-d1s", "http://127.0.0.1:\(port)/wrk"])
        }
        #expect(out.status == 0, "\(out.stderr)")
        let requests = out.stdout.split(separator: "\n").first { $0.contains("requests in") }
            .flatMap { Int($0.split(separator: " ").first ?? "") } ?? 0
        #expect(requests > 100, "\(out.stdout)")
        #expect(!out.stdout.contains("Non-2xx"), "\(out.stdout)")
        #expect(!out.stdout.contains("Socket errors"), "\(out.stdout)")
    }
}
