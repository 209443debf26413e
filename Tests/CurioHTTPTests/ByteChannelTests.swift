// serveHTTP over a ByteChannel that is not a Socket (as a TLS connection
// will be): requests already buffered are answered with one send.
import Curio
import CurioHTTP
import Glibc
import HTTPTypes
import Synchronization
import Testing

/// A channel over a socket that counts the sends the server makes.
final class CountingChannel: ByteChannel, @unchecked Sendable {
    // Unchecked: `socket` is used by the one task serving it; the counter
    // is a Mutex.
    let socket: Socket
    let sends = Mutex(0)
    init(_ socket: Socket) { self.socket = socket }
    func recv(_ maxBytes: Int, file: StaticString, line: UInt, function: StaticString) async throws -> [UInt8] {
        try await socket.recv(maxBytes, file: file, line: line, function: function)
    }
    func sendAll(_ bytes: [UInt8], file: StaticString, line: UInt, function: StaticString) async throws {
        sends.withLock { $0 += 1 }
        try await socket.sendAll(bytes, file: file, line: line, function: function)
    }
    func close() { socket.close() }
}

@Suite(.timeLimit(.minutes(1)))
struct ByteChannelTests {
    @Test func pipelinedResponsesLeaveInOneSend() async throws {
        let (texts, sends) = try await HTTPTest.kernel {
            let listener = try Socket(.inet, .stream)
            defer { listener.close() }
            try listener.bind(("127.0.0.1", 0))
            try listener.listen(1)
            let client = try Socket(.inet, .stream)
            try await client.connect(("127.0.0.1", try listener.localAddress.port))
            let (accepted, _) = try await listener.accept()
            let clientStream = SocketStream(client)
            defer { clientStream.close() }
            var burst = ""
            for i in 0..<10 { burst += "GET /\(i) HTTP/1.1\r\nHost: a\r\n\r\n" }
            burst += "GET /end HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            try await clientStream.write(burst)
            // Serve only once every request is queued on the server side,
            // so the server finds them all in its first receive.
            let want = burst.utf8.count
            let peek = UnsafeMutableRawPointer.allocate(byteCount: want, alignment: 1)
            defer { peek.deallocate() }
            while Glibc.recv(accepted.fd, peek, want, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)) < want {
                try await Curio.sleep(0)
            }
            let channel = CountingChannel(accepted)
            let serving = try await spawn(name: "serve") {
                await serveHTTP(SocketStream(channel), handler: TestHandlers.echo)
            }
            var texts: [String] = []
            for _ in 0..<11 { texts.append(try await HTTPTest.readResponse(clientStream).text) }
            _ = try await serving.join()
            return (texts, channel.sends.withLock { $0 })
        }
        #expect(texts == (0..<10).map { "hello /\($0)\n" } + ["hello /end\n"])
        #expect(sends == 1)
    }
}
