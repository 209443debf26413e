// Buffers the system reads or writes while a task is suspended belong to
// the socket, pipe or file for the whole operation: bytes sent from
// temporary arrays arrive intact through suspensions and cancellations,
// huge receive sizes return what arrives without allocating (or keeping)
// more than the bounded buffer, and the buffers are reused, not
// reallocated, from one round trip to the next.
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct BufferLifetimeTests {
    /// A temporary array is gone from the caller's hands as soon as the
    /// call starts; the send suspends many times (the peer reads slowly,
    /// the buffers are small) and every byte still arrives in order.
    @Test func bytesOfATemporaryArrayArriveThroughManySuspensions() async throws {
        let total = 3 << 20
        let got = try await IOTest.run { () -> Bool in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 4096, sendBuffer: 4096)
            defer { client.close(); server.close() }
            let writer = try await spawn { try await client.sendAll(IOTest.pattern(total, seed: 7)) }
            var received: [UInt8] = []
            while received.count < total {
                let chunk = try await server.recv(1 << 40)
                if chunk.isEmpty { break }
                received += chunk
            }
            try await writer.join()
            return received == IOTest.pattern(total, seed: 7)
        }
        #expect(got)
    }

    /// A send cancelled while the system holds its buffer reports how far
    /// it got, and exactly those bytes (a prefix of the data) arrive.
    @Test func aCancelledSendAllDeliversExactlyWhatItReports() async throws {
        let r = try await IOTest.run { () -> (Int?, Bool, Int) in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 8192, sendBuffer: 8192)
            defer { client.close(); server.close() }
            let data = IOTest.pattern(8 << 20, seed: 3)
            let writer = try await spawn { () -> Int? in
                do {
                    try await client.sendAll(data)
                    return nil
                } catch let e as TaskCancelled {
                    return e.bytesSent
                }
            }
            try await IOTest.waitBlocked(writer, .writeWait)
            try await writer.cancel()
            let sent = try await writer.join() ?? nil
            client.close()
            let received = try await IOTest.receiveAll(server)
            return (sent, received == Array(data.prefix(received.count)), received.count)
        }
        #expect(r.0 != nil, "the cancelled sendAll reported no progress")
        #expect(r.1, "the bytes that arrived are not the data's prefix")
        #expect(r.0 == r.2, "reported \(String(describing: r.0)) bytes sent, \(r.2) arrived")
        #expect((r.0 ?? 0) > 0 && (r.0 ?? 0) < 8 << 20)
    }

    /// recv(1 << 40) (which used to abort) and recv(64 MB) (which used to
    /// pin 64 MB per socket) return what arrived and keep at most
    /// Socket.maxTransfer bytes; zero and negative sizes are errors.
    @Test func hugeReceiveSizesCostOnlyWhatArrives() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            var seen: [String] = []
            for size in [1 << 40, Int.max, 64 << 20] {
                try await client.sendAll(Array("hello".utf8))
                seen.append(IOTest.text(try await server.recv(size)))
            }
            seen.append("kept \(server.pinnedBuffers.receive <= Socket.maxTransfer)")
            for size in [0, -1, Int.min] {
                seen.append(IOTest.kind(await IOTest.error { _ = try await server.recv(size) }))
            }
            return seen
        }
        #expect(Array(r.prefix(4)) == ["hello", "hello", "hello", "kept true"])
        #expect(Array(r.dropFirst(4)) == Array(repeating: IOTest.kind(CurioUsageError(.invalidArgument, "")), count: 3))
    }

    /// A large stream read comes back in bounded pieces, all of it.
    @Test func aLargeReadArrivesInBoundedPieces() async throws {
        let r = try await IOTest.run { () -> (Bool, Int) in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let data = IOTest.pattern(1 << 20, seed: 5)
            let writer = try await spawn {
                try await client.sendAll(data)
                client.close()
            }
            var got: [UInt8] = []
            var largest = 0
            while true {
                let chunk = try await server.recv(1 << 30)
                if chunk.isEmpty { break }
                largest = max(largest, chunk.count)
                got += chunk
            }
            try await writer.join()
            return (got == data, largest)
        }
        #expect(r.0)
        #expect(r.1 <= Socket.maxTransfer)
    }

    /// A datagram larger than the kept buffer, asked for with a huge size,
    /// arrives whole (in memory of its own size) and the kept buffer stays
    /// bounded; one larger than `maxBytes` is cut as recvfrom(2) does.
    @Test func aLargeDatagramArrivesWhole() async throws {
        let dir = try IOTest.makeTempDirectory()
        defer { IOTest.removeDirectory(dir) }
        let r = try await IOTest.run { () -> [String] in
            let receiver = try Socket(.unix, .datagram)
            let sender = try Socket(.unix, .datagram)
            defer { receiver.close(); sender.close() }
            try receiver.setOption(.receiveBufferSize, 1 << 20)
            try sender.setOption(.sendBufferSize, 1 << 20)
            let address = try SocketAddress(unixPath: dir + "/d.sock")
            try receiver.bind(address)
            let big = IOTest.pattern(100_000, seed: 9)
            var seen: [String] = []
            try await sender.sendTo(big, address)
            let (got, _) = try await receiver.recvFrom(1 << 40)
            seen.append("whole \(got == big)")
            try await sender.sendTo(big, address)
            let (cut, _) = try await receiver.recvFrom(70_000)
            seen.append("cut \(cut == Array(big.prefix(70_000)))")
            try await sender.sendTo(Array("small".utf8), address)
            seen.append(IOTest.text(try await receiver.recvFrom(1 << 40).0))
            seen.append("kept \(receiver.pinnedBuffers.receive <= Socket.maxTransfer)")
            return seen
        }
        #expect(r == ["whole true", "cut true", "small", "kept true"])
    }

    /// The echo path allocates its buffers once: a thousand round trips
    /// leave both buffers where the first put them.
    @Test func roundTripsReuseTheSocketsBuffers() async throws {
        let r = try await IOTest.run { () -> (Bool, Bool) in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let message = Array("ping\n".utf8)
            try await client.sendAll(message)
            _ = try await server.recv(65536)
            try await server.sendAll(message)
            _ = try await client.recv(65536)
            let first = server.pinnedBuffers
            var same = true
            for _ in 0..<1000 {
                try await client.sendAll(message)
                let got = try await server.recv(65536)
                try await server.sendAll(got)
                _ = try await client.recv(65536)
                let now = server.pinnedBuffers
                same = same && now.receiveAt == first.receiveAt && now.sendAt == first.sendAt
            }
            return (same, first.receiveAt != nil && first.sendAt != nil)
        }
        #expect(r.0, "a buffer was reallocated during the round trips")
        #expect(r.1)
    }

    /// Pipes: huge read sizes, a large write through the bounded buffer.
    @Test func pipesBoundTheirBuffersToo() async throws {
        let r = try await IOTest.run { () -> (String, Bool, String) in
            let (rd, wr) = try Pipe.make()
            defer { rd.close(); wr.close() }
            try await wr.sendAll(Array("abc".utf8))
            let small = IOTest.text(try await rd.recv(1 << 40))
            let data = IOTest.pattern(1 << 20, seed: 11)
            let writer = try await spawn {
                try await wr.sendAll(data)
                wr.close()
            }
            var got: [UInt8] = []
            while true {
                let chunk = try await rd.recv(Int.max)
                if chunk.isEmpty { break }
                got += chunk
            }
            try await writer.join()
            return (small, got == data, IOTest.kind(await IOTest.error { _ = try await rd.recv(-5) }))
        }
        #expect(r.0 == "abc")
        #expect(r.1)
        #expect(r.2 == IOTest.kind(CurioUsageError(.invalidArgument, "")))
    }

    /// Files: a huge read size reads one bounded chunk; a file used by two
    /// tasks at once refuses the second (its buffer is in use) instead of
    /// letting two requests share it.
    @Test func filesBoundReadsAndRefuseASecondUser() async throws {
        let dir = try IOTest.makeTempDirectory()
        defer { IOTest.removeDirectory(dir) }
        let r = try await IOTest.run { () -> [String] in
            let path = dir + "/f"
            let data = IOTest.pattern(200_000, seed: 13)
            let w = try await AsyncFile.open(path, "w")
            try await w.write(data)
            w.close()
            let f = try await AsyncFile.open(path)
            defer { f.close() }
            var seen: [String] = []
            let first = try await f.read(1 << 40)
            seen.append("first \(first.count <= Socket.maxTransfer && first == Array(data.prefix(first.count)))")
            let rest = try await f.read()
            seen.append("all \(first + rest == data)")
            try f.seek(0)
            // The first suspends in its read (an io_uring request or a
            // worker thread's job); the second runs meanwhile.
            let reader = try await spawn { try await f.read() }
            let intruder = try await spawn { () -> String in
                IOTest.kind(await IOTest.error { _ = try await f.read(10) })
            }
            seen.append("second \(try await intruder.join() ?? "nil")")
            seen.append("reader \(try await reader.join() == data)")
            return seen
        }
        #expect(r == ["first true", "all true", "second ResourceBusy", "reader true"])
    }
}
