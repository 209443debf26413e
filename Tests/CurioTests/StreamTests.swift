// SocketStream: read, readAll, readExactly (IncompleteRead at the end),
// readLine (LineTooLong keeps the bytes), `for try await line in stream`,
// write(String), a 1 MiB payload, and partial progress: a read cancelled or
// timed out half-way says how much arrived (`bytesRead`) and the next read
// gets it; a sendAll to a peer that never reads blocks and is cancelled
// with `bytesSent` set to exactly what the peer can read.
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct StreamTests {
    /// A stream over the server side of a loopback pair, and the client.
    private static func pair(receiveBuffer: Int? = nil, sendBuffer: Int? = nil)
        async throws -> (client: Socket, stream: SocketStream) {
        let (client, server) = try await IOTest.tcpPair(receiveBuffer: receiveBuffer, sendBuffer: sendBuffer)
        return (client, SocketStream(server))
    }

    /// Sends `text` and waits until all of it is queued at `stream`'s socket.
    private static func deliver(_ text: String, from client: Socket, to stream: SocketStream) async throws {
        let before = IOTest.queued(stream.socket!.fd)
        try await client.sendAll(IOTest.bytes(text))
        let want = before + text.utf8.count
        try await IOTest.waitUntil("\(want) bytes queued") { IOTest.queued(stream.socket!.fd) >= want }
    }

    @Test(.timeLimit(.minutes(1)))
    func readReturnsWhatIsBufferedOrOneReceive() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, stream) = try await Self.pair()
            defer { client.close(); stream.close() }
            try await Self.deliver("hello world", from: client, to: stream)
            var out: [String] = []
            out.append(IOTest.text(try await stream.read(5)))
            out.append(IOTest.text(try await stream.read(100)))  // the rest of the buffer only
            out.append("zero: \(try await stream.read(0).count)")
            client.close()
            out.append("eof: \(try await stream.read(10).count)")
            out.append("eof again: \(try await stream.read(10).count)")
            return out
        }
        #expect(r == ["hello", " world", "zero: 0", "eof: 0", "eof again: 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func readAllUntilThePeerCloses() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, stream) = try await Self.pair()
            defer { stream.close() }
            let writer = try await spawn {
                for part in ["one ", "two ", "three"] {
                    try await client.sendAll(IOTest.bytes(part))
                    try await Curio.sleep(0)
                }
                client.close()
            }
            let all = try await stream.readAll()
            try await writer.join()
            let again = try await stream.readAll()
            let noLimit = try await stream.read()
            return [IOTest.text(all), "\(again.count)", "\(noLimit.count)"]
        }
        #expect(r == ["one two three", "0", "0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func readExactly() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, stream) = try await Self.pair()
            defer { client.close(); stream.close() }
            let writer = try await spawn {
                try await client.sendAll(IOTest.bytes("012"))
                try await Curio.sleep(0.001)
                try await client.sendAll(IOTest.bytes("3456789"))
            }
            var out: [String] = []
            out.append(IOTest.text(try await stream.readExactly(4)))
            out.append(IOTest.text(try await stream.readExactly(6)))
            out.append("zero: \(try await stream.readExactly(0).count)")
            try await writer.join()
            out.append(IOTest.kind(await IOTest.error { _ = try await stream.readExactly(-1) }))
            return out
        }
        #expect(r == ["0123", "456789", "zero: 0", "CurioUsageError.invalidArgument"])
    }

    @Test(.timeLimit(.minutes(1)))
    func readExactlyAtTheEndIsIncompleteReadWithThePartialData() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, stream) = try await Self.pair()
            defer { stream.close() }
            try await client.sendAll(IOTest.bytes("abcde"))
            client.close()
            var out: [String] = []
            do {
                _ = try await stream.readExactly(8)
                out.append("no error")
            } catch let e as IncompleteRead {
                out.append("\(IOTest.text(e.partial)) \(e.expected) \(e.bytesRead)")
                out.append(e.description)
            }
            // The partial data was handed over with the error.
            out.append("then \(try await stream.read(10).count)")
            return out
        }
        #expect(r == ["abcde 8 5", "IncompleteRead: got 5 of 8 bytes before the end of the stream", "then 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func readLineWithAndWithoutATrailingNewline() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, stream) = try await Self.pair()
            defer { stream.close() }
            try await client.sendAll(IOTest.bytes("one\n\ntwo\nthree"))
            client.close()
            var out: [String] = []
            for _ in 0..<6 { out.append(IOTest.text(try await stream.readLine())) }
            return out
        }
        #expect(r == ["one\n", "\n", "two\n", "three", "", ""])
    }

    @Test(.timeLimit(.minutes(1)))
    func readLineWaitsForTheNewline() async throws {
        let r = try await IOTest.run { () -> String in
            let (client, stream) = try await Self.pair()
            defer { client.close(); stream.close() }
            let reader = try await spawn { IOTest.text(try await stream.readLine()) }
            for part in ["pa", "rt", "ial", " line\nnext"] {
                try await client.sendAll(IOTest.bytes(part))
                if !part.contains("\n") { try await IOTest.waitBlocked(reader, .readWait) }
            }
            return try await reader.join() ?? "nil"
        }
        #expect(r == "partial line\n")
    }

    @Test(.timeLimit(.minutes(1)))
    func lineTooLongHasAClearMessageAndKeepsTheBytes() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, stream) = try await Self.pair()
            defer { client.close(); stream.close() }
            stream.maxLineLength = 16
            var out: [String] = []
            // No newline within the limit.
            try await Self.deliver(String(repeating: "x", count: 20), from: client, to: stream)
            do {
                _ = try await stream.readLine()
                out.append("no error")
            } catch let e as LineTooLong {
                out.append("limit \(e.limit)")
                out.append("\(e.description.contains("16") && e.description.contains("maxLineLength"))")
            }
            // The bytes stayed buffered: with a higher limit the line completes.
            stream.maxLineLength = 64
            try await client.sendAll(IOTest.bytes("yz\n"))
            out.append(IOTest.text(try await stream.readLine()))
            // A newline that is there but too far away: same error, same bytes.
            stream.maxLineLength = 8
            try await Self.deliver("0123456789\nshort\n", from: client, to: stream)
            out.append(IOTest.kind(await IOTest.error { _ = try await stream.readLine() }))
            out.append(IOTest.text(try await stream.readExactly(11)))
            out.append(IOTest.text(try await stream.readLine()))
            return out
        }
        #expect(r == ["limit 16", "true", String(repeating: "x", count: 20) + "yz\n",
                      "LineTooLong", "0123456789\n", "short\n"])
    }

    @Test(.timeLimit(.minutes(1)))
    func forTryAwaitLineInStream() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, stream) = try await Self.pair()
            defer { stream.close() }
            let writer = try await spawn {
                for i in 1...50 { try await client.sendAll(IOTest.bytes("line \(i)\n")) }
                try await client.sendAll(IOTest.bytes("tail"))
                client.close()
            }
            var lines: [String] = []
            for try await line in stream { lines.append(IOTest.text(line)) }
            try await writer.join()
            // `lines` is the same sequence, now at its end.
            var more = 0
            for try await _ in stream.lines { more += 1 }
            return lines + ["more \(more)"]
        }
        #expect(r == (1...50).map { "line \($0)\n" } + ["tail", "more 0"])
    }

    @Test(.timeLimit(.minutes(1)))
    func writeStringAndBytes() async throws {
        let r = try await IOTest.run { () -> String in
            let (client, stream) = try await Self.pair()
            defer { client.close(); stream.close() }
            try await stream.write("héllo, ")
            try await stream.write(IOTest.bytes("wörld\n"))
            try await stream.flush()
            stream.socket!.close()
            return IOTest.text(try await IOTest.receiveAll(client))
        }
        #expect(r == "héllo, wörld\n")
    }

    @Test(.timeLimit(.minutes(1)))
    func oneMebibyteThroughAStreamIntact() async throws {
        let r = try await IOTest.run { () -> [Bool] in
            let (client, server) = try await IOTest.tcpPair()
            let a = SocketStream(client), b = SocketStream(server)
            defer { a.close(); b.close() }
            let payload = IOTest.pattern(1 << 20, seed: 3)
            let lines = IOTest.linePayload(1 << 20, lineLength: 128, seed: 5)
            let writer = try await spawn {
                try await a.write(payload)
                try await a.write(lines)
                try a.socket!.shutdown(.write)
            }
            let got = try await b.readExactly(1 << 20)
            var lineCount = 0, lineBytes: [UInt8] = []
            lineBytes.reserveCapacity(1 << 20)
            for try await line in b {
                lineCount += 1
                lineBytes += line
            }
            try await writer.join()
            return [got == payload, lineBytes == lines, lineCount == (1 << 20) / 128]
        }
        #expect(r == [true, true, true])
    }

    @Test(.timeLimit(.minutes(1)))
    func aLongStreamOfLinesKeepsABoundedBuffer() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            let stream = SocketStream(server, chunk: 4096)
            defer { client.close(); stream.close() }
            // 8 MiB of 100-byte lines: chunks never end on a line boundary.
            let block = IOTest.linePayload(100 * 1000, lineLength: 100)
            let writer = try await spawn {
                for _ in 0..<84 { try await client.sendAll(block) }
                try client.shutdown(.write)
            }
            var lines = 0, largest = 0
            while true {
                let line = try await stream.readLine()
                if line.isEmpty { break }
                lines += 1
                largest = max(largest, stream.buffer.count)
            }
            try await writer.join()
            return ["lines \(lines)", "bounded \(largest <= 2 * 4096 + 100)"]
        }
        #expect(r == ["lines 84000", "bounded true"])
    }

    // MARK: Partial progress

    /// A reader blocked in `readExactly(100)` after 40 bytes arrived: what
    /// its cancellation says, and what the next read gets.
    @Test(.timeLimit(.minutes(1)))
    func cancelledReadExactlyReportsBytesReadAndLosesNothing() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, stream) = try await Self.pair()
            defer { client.close(); stream.close() }
            let payload = IOTest.pattern(100, seed: 11)
            try await client.sendAll(Array(payload[0..<40]))
            let fd = stream.socket!.fd
            try await IOTest.waitUntil("40 bytes queued") { IOTest.queued(fd) == 40 }
            let reader = try await spawn { () async throws -> String in
                do {
                    _ = try await stream.readExactly(100)
                    return "no error"
                } catch let e as TaskCancelled {
                    return "TaskCancelled bytesRead \(e.bytesRead.map(String.init) ?? "nil") \(e.description)"
                }
            }
            // The reader took the 40 bytes and waits for more.
            try await IOTest.waitUntil("the reader took the bytes and waits") {
                IOTest.queued(fd) == 0 && IOTest.isBlocked(reader, .readWait)
            }
            try await reader.cancel()
            let seen = try await reader.join() ?? "nil"
            try await client.sendAll(Array(payload[40...]))
            let rest = try await stream.readExactly(100)
            return [seen, "intact \(rest == payload)"]
        }
        #expect(r == ["TaskCancelled bytesRead 40 TaskCancelled (bytesRead: 40)", "intact true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func timedOutReadExactlyReportsBytesReadAndLosesNothing() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, stream) = try await Self.pair()
            defer { client.close(); stream.close() }
            let payload = IOTest.pattern(100, seed: 12)
            try await client.sendAll(Array(payload[0..<40]))
            let fd = stream.socket!.fd
            try await IOTest.waitUntil("40 bytes queued") { IOTest.queued(fd) == 40 }
            var out: [String] = []
            do {
                _ = try await timeoutAfter(0.3) { try await stream.readExactly(100) }
                out.append("no error")
            } catch let e as TaskTimeout {
                out.append("TaskTimeout bytesRead \(e.bytesRead.map(String.init) ?? "nil")")
                let any: any Error = e
                out.append("\(any is TimeoutError) \(any is CancelledError)")
            }
            try await client.sendAll(Array(payload[40...]))
            out.append("intact \(try await stream.readExactly(100) == payload)")
            return out
        }
        #expect(r == ["TaskTimeout bytesRead 40", "true true", "intact true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func timedOutReadLineAndReadAllKeepTheirBytes() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, stream) = try await Self.pair()
            defer { stream.close() }
            var out: [String] = []
            try await Self.deliver("abc", from: client, to: stream)
            do {
                _ = try await timeoutAfter(0.2) { try await stream.readLine() }
                out.append("no error")
            } catch let e as TaskTimeout {
                out.append("readLine bytesRead \(e.bytesRead.map(String.init) ?? "nil")")
            }
            try await client.sendAll(IOTest.bytes("def\n"))
            out.append(IOTest.text(try await stream.readLine()))
            // readAll: what has arrived so far stays too.
            try await Self.deliver("ghi", from: client, to: stream)
            let got = try await ignoreAfter(0.2) { try await stream.readAll() }
            out.append("ignored \(got == nil)")
            try await client.sendAll(IOTest.bytes("jkl"))
            client.close()
            out.append(IOTest.text(try await stream.readAll()))
            return out
        }
        #expect(r == ["readLine bytesRead 3", "abcdef\n", "ignored true", "ghijkl"])
    }

    /// A peer that never reads: sendAll blocks once the buffers are full,
    /// and its cancellation says how much went out — exactly what the
    /// peer finds when it reads after all.
    @Test(.timeLimit(.minutes(1)))
    func sendAllToAPeerThatNeverReadsIsCancelledWithBytesSent() async throws {
        let total = 8 << 20
        let r = try await IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 32768, sendBuffer: 32768)
            defer { server.close() }
            let payload = IOTest.pattern(total, seed: 21)
            let sender = try await spawn { () async throws -> Int in
                do {
                    try await client.sendAll(payload)
                    return -1
                } catch let e as TaskCancelled {
                    return e.bytesSent ?? -2
                }
            }
            // Blocked with data on its way: some bytes reached the peer.
            try await IOTest.waitUntil("the sender blocks with bytes at the peer") {
                IOTest.isBlocked(sender, .writeWait) && IOTest.queued(server.fd) > 0
            }
            try await sender.cancel()
            let sent = try await sender.join() ?? -3
            // The peer reads everything that went out, then the end.
            client.close()
            let got = try await IOTest.receiveAll(server)
            return ["\(sent > 0) \(sent < total)", "\(got.count == sent)", "\(got == Array(payload[0..<got.count]))"]
        }
        #expect(r == ["true true", "true", "true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func timedOutStreamWriteReportsBytesSent() async throws {
        let total = 8 << 20
        let r = try await IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 32768, sendBuffer: 32768)
            let stream = SocketStream(client)
            defer { server.close() }
            let payload = IOTest.pattern(total, seed: 22)
            var out: [String] = []
            var sent = -1
            do {
                try await timeoutAfter(0.3) { try await stream.write(payload) }
                out.append("no error")
            } catch let e as TaskTimeout {
                sent = e.bytesSent ?? -2
                out.append("\(sent > 0) \(sent < total)")
            }
            stream.close()
            let got = try await IOTest.receiveAll(server)
            out.append("\(got.count == sent) \(got == Array(payload[0..<got.count]))")
            return out
        }
        #expect(r == ["true true", "true true"])
    }
}
