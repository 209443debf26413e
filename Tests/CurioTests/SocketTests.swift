// Sockets: TCP over IPv4 and IPv6 loopback, UDP, Unix stream and datagram
// sockets, options, addresses, recv(into:), partial sends, half-close,
// close and use after close, connect refused, two tasks on one direction
// (ResourceBusy), a socket used from another kernel (wrongKernel), recv(0).
import CCurioKernel
import Glibc
import Synchronization
import Testing

@testable import Curio

// MARK: - Tests

@Suite(.timeLimit(.minutes(1)))
struct SocketTests {
    /// Connect, accept, exchange both ways; every address agrees.
    private static func tcpRoundTrip(_ family: SocketAddress.Family, host: String) async throws -> [String] {
        var notes: [String] = []
        let listener = try Socket(family, .stream)
        defer { listener.close() }
        try listener.setOption(.reuseAddress, true)
        try listener.bind((host, 0))
        try listener.listen(5)
        let bound = try listener.localAddress
        notes.append("bound \(bound.family) \(bound.host) \(bound.port > 0)")

        let server = try await spawn { () async throws -> [String] in
            let (conn, peer) = try await listener.accept()
            defer { conn.close() }
            var seen = ["peer \(peer.host)", "peer is peerAddress \(peer == (try conn.peerAddress))"]
            seen.append("server local is listener \(try conn.localAddress == bound)")
            let data = try await IOTest.receive(conn, count: 5)
            seen.append("server got \(IOTest.text(data))")
            try await conn.sendAll(IOTest.bytes("world"))
            return seen
        }
        let client = try Socket(family, .stream)
        defer { client.close() }
        try await client.connect(bound)
        notes.append("client peer is listener \(try client.peerAddress == bound)")
        try await client.sendAll(IOTest.bytes("hello"))
        let reply = try await IOTest.receive(client, count: 5)
        notes.append("client got \(IOTest.text(reply))")
        let seen = try await server.join() ?? []
        let clientLocal = try client.localAddress
        notes += seen
        notes.append("accept peer == client local: \(seen.contains("peer \(clientLocal.host)"))")
        notes.append("description \(bound.description == "('\(bound.host)', \(bound.port))")")
        return notes
    }

    @Test(.timeLimit(.minutes(1)))
    func tcpOverIPv4Loopback() async throws {
        let notes = try await IOTest.run { try await Self.tcpRoundTrip(.inet, host: "127.0.0.1") }
        #expect(notes == [
            "bound inet 127.0.0.1 true",
            "client peer is listener true",
            "client got world",
            "peer 127.0.0.1", "peer is peerAddress true", "server local is listener true", "server got hello",
            "accept peer == client local: true",
            "description true",
        ])
    }

    @Test(.enabled(if: IOTest.hasIPv6Loopback, "no IPv6 loopback on this machine"), .timeLimit(.minutes(1)))
    func tcpOverIPv6Loopback() async throws {
        let notes = try await IOTest.run { try await Self.tcpRoundTrip(.inet6, host: "::1") }
        #expect(notes == [
            "bound inet6 ::1 true",
            "client peer is listener true",
            "client got world",
            "peer ::1", "peer is peerAddress true", "server local is listener true", "server got hello",
            "accept peer == client local: true",
            "description true",
        ])
    }

    @Test(.enabled(if: IOTest.hasIPv6Loopback, "no IPv6 loopback on this machine"), .timeLimit(.minutes(1)))
    func ipv6OnlyOptionAndWildcardBind() async throws {
        let r = try await IOTest.run { () -> [String] in
            let s = try Socket(.inet6, .stream)
            defer { s.close() }
            try s.setOption(.ipv6Only, true)
            let on = try s.getOption(.ipv6Only)
            try s.setOption(.ipv6Only, false)
            let off = try s.getOption(.ipv6Only)
            try s.bind(("", 0))
            let a = try s.localAddress
            return ["\(on != 0)", "\(off)", a.host, "\(a.family)"]
        }
        #expect(r == ["true", "0", "::", "inet6"])
    }

    @Test(.timeLimit(.minutes(1)))
    func udpSendToAndRecvFrom() async throws {
        let r = try await IOTest.run { () -> [String] in
            let a = try Socket(.inet, .datagram)
            let b = try Socket(.inet, .datagram)
            defer { a.close(); b.close() }
            try a.bind(("127.0.0.1", 0))
            try b.bind(("127.0.0.1", 0))
            let aAddr = try a.localAddress, bAddr = try b.localAddress
            var out: [String] = []
            out.append("sent \(try await a.sendTo(IOTest.bytes("ping"), bAddr))")
            let (data, from) = try await b.recvFrom(100)
            out.append("b got \(IOTest.text(data)) from a: \(from == aAddr)")
            try await b.sendTo(IOTest.bytes("pong"), from)
            let (reply, replyFrom) = try await a.recvFrom(100)
            out.append("a got \(IOTest.text(reply)) from b: \(replyFrom == bAddr)")
            // Datagram boundaries are kept; a short buffer truncates one
            // datagram and the next one arrives whole.
            try await a.sendTo(IOTest.bytes("0123456789"), bAddr)
            try await a.sendTo(IOTest.bytes("second"), bAddr)
            let (cut, _) = try await b.recvFrom(4)
            let (second, _) = try await b.recvFrom(100)
            out.append("\(IOTest.text(cut)) \(IOTest.text(second))")
            // An empty datagram is a datagram, not an end of stream.
            out.append("empty sent \(try await a.sendTo([], bAddr))")
            let (empty, emptyFrom) = try await b.recvFrom(100)
            out.append("empty got \(empty.count) from a: \(emptyFrom == aAddr)")
            return out
        }
        #expect(r == [
            "sent 4", "b got ping from a: true", "a got pong from b: true",
            "0123 second", "empty sent 0", "empty got 0 from a: true",
        ])
    }

    @Test(.timeLimit(.minutes(1)))
    func udpRecvFromWaitsForADatagram() async throws {
        let r = try await IOTest.run { () -> String in
            let a = try Socket(.inet, .datagram)
            let b = try Socket(.inet, .datagram)
            defer { a.close(); b.close() }
            try a.bind(("127.0.0.1", 0))
            try b.bind(("127.0.0.1", 0))
            let bAddr = try b.localAddress
            let receiver = try await spawn { () async throws -> String in
                let (d, _) = try await b.recvFrom(100)
                return IOTest.text(d)
            }
            try await IOTest.waitBlocked(receiver, .readWait)
            try await a.sendTo(IOTest.bytes("late"), bAddr)
            return try await receiver.join() ?? "nil"
        }
        #expect(r == "late")
    }

    @Test(.timeLimit(.minutes(1)))
    func unixStreamSockets() async throws {
        let dir = try IOTest.makeTempDirectory()
        defer { IOTest.removeDirectory(dir) }
        let path = dir + "/stream.sock"
        let r = try await IOTest.run { () -> [String] in
            let listener = try Socket(.unix, .stream)
            defer { listener.close() }
            try listener.bind(SocketAddress(unixPath: path))
            try listener.listen(5)
            var out: [String] = []
            let local = try listener.localAddress
            out.append("\(local.family) \(local.host == path) \(local.port) \(local.description == "'\(path)'")")
            let server = try await spawn { () async throws -> String in
                let (conn, _) = try await listener.accept()
                defer { conn.close() }
                let d = try await IOTest.receive(conn, count: 3)
                try await conn.sendAll(d.reversed())
                return IOTest.text(d)
            }
            let client = try Socket(.unix, .stream)
            defer { client.close() }
            try await client.connect(SocketAddress(unixPath: path))
            out.append("client peer \(try client.peerAddress.host == path)")
            try await client.sendAll(IOTest.bytes("abc"))
            out.append("reply \(IOTest.text(try await IOTest.receive(client, count: 3)))")
            out.append("server got \(try await server.join() ?? "nil")")
            return out
        }
        #expect(r == ["unix true 0 true", "client peer true", "reply cba", "server got abc"])
    }

    @Test(.timeLimit(.minutes(1)))
    func unixDatagramSockets() async throws {
        let dir = try IOTest.makeTempDirectory()
        defer { IOTest.removeDirectory(dir) }
        let r = try await IOTest.run { () -> [String] in
            let a = try Socket(.unix, .datagram)
            let b = try Socket(.unix, .datagram)
            defer { a.close(); b.close() }
            try a.bind(SocketAddress(unixPath: dir + "/a.sock"))
            try b.bind(SocketAddress(unixPath: dir + "/b.sock"))
            try await a.sendTo(IOTest.bytes("hi b"), SocketAddress(unixPath: dir + "/b.sock"))
            let (d, from) = try await b.recvFrom(100)
            try await b.sendTo(IOTest.bytes("hi a"), from)
            let (d2, from2) = try await a.recvFrom(100)
            return [IOTest.text(d), from.host, IOTest.text(d2), from2.host]
        }
        #expect(r == ["hi b", dir + "/a.sock", "hi a", dir + "/b.sock"])
    }

    @Test(.timeLimit(.minutes(1)))
    func optionsGetAndSet() async throws {
        let r = try await IOTest.run { () -> [String] in
            let s = try Socket(.inet, .stream)
            defer { s.close() }
            var out: [String] = []
            try s.setOption(.reuseAddress, true)
            out.append("reuseAddress \(try s.getOption(.reuseAddress) != 0)")
            try s.setOption(.reuseAddress, false)
            out.append("reuseAddress \(try s.getOption(.reuseAddress) != 0)")
            try s.setOption(.noDelay, true)
            out.append("noDelay \(try s.getOption(.noDelay) != 0)")
            try s.setOption(.noDelay, false)
            out.append("noDelay \(try s.getOption(.noDelay) != 0)")
            try s.setOption(.keepAlive, true)
            out.append("keepAlive \(try s.getOption(.keepAlive) != 0)")
            try s.setOption(.receiveBufferSize, 65536)
            out.append("rcvbuf >= 65536 \(try s.getOption(.receiveBufferSize) >= 65536)")
            // Any integer option by level and name.
            let priority = Socket.Option(level: SOL_SOCKET, name: SO_PRIORITY)
            try s.setOption(priority, 3)
            out.append("priority \(try s.getOption(priority))")
            // An option the socket does not have is a SocketError.
            let udp = try Socket(.inet, .datagram)
            defer { udp.close() }
            let e = await IOTest.error { try udp.setOption(.noDelay, true) }
            out.append("noDelay on UDP: \(e is SocketError)")
            return out
        }
        #expect(r == [
            "reuseAddress true", "reuseAddress false", "noDelay true", "noDelay false", "keepAlive true",
            "rcvbuf >= 65536 true", "priority 3", "noDelay on UDP: true",
        ])
    }

    @Test(.timeLimit(.minutes(1)))
    func bindToEveryInterfaceAndTheSocketProperties() async throws {
        let r = try await IOTest.run { () -> [String] in
            let s = try Socket(.inet, .stream)
            defer { s.close() }
            try s.bind(("", 0))
            let a = try s.localAddress
            return [a.host, "\(a.port > 0)", "\(s.family)", "\(s.kind)", "\(s.fd >= 0)"]
        }
        #expect(r == ["0.0.0.0", "true", "inet", "stream", "true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func recvIntoTheCallersBuffer() async throws {
        let r = try await IOTest.run { () -> String in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            try await client.sendAll(IOTest.bytes("0123456789ABCDEFGHIJ"))
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
            defer { buf.deallocate() }
            var got = 0
            while got < 20 {
                // At most 16 bytes per call, into the rest of the buffer.
                let room = UnsafeMutableRawBufferPointer(rebasing: buf[got..<min(got + 16, 64)])
                let n = try await server.recv(into: room)
                if n == 0 { break }
                if n > 16 { return "recv(into:) wrote \(n) bytes into 16" }
                got += n
            }
            return String(decoding: UnsafeRawBufferPointer(rebasing: buf[0..<got]), as: UTF8.self)
        }
        #expect(r == "0123456789ABCDEFGHIJ")
    }

    @Test(.timeLimit(.minutes(1)))
    func sendReturnsAPartialCountWhenTheBuffersAreFull() async throws {
        let total = 4 << 20
        let r = try await IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 32768, sendBuffer: 32768)
            defer { client.close(); server.close() }
            let payload = IOTest.pattern(total, seed: 7)
            let n = try await client.send(payload)
            // Everything send() reported is what the peer receives, in order.
            let got = try await IOTest.receive(server, count: n)
            return ["\(n > 0) \(n < total)", "\(got.count == n)", "\(got == Array(payload[0..<n]))"]
        }
        #expect(r == ["true true", "true", "true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func halfCloseWithShutdownWrite() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            try await client.sendAll(IOTest.bytes("last words"))
            try client.shutdown(.write)
            var out: [String] = []
            out.append(IOTest.text(try await IOTest.receiveAll(server)))
            out.append("eof again: \(try await server.recv(10).isEmpty)")
            // The other direction still works.
            try await server.sendAll(IOTest.bytes("bye"))
            try server.shutdown(.write)
            out.append(IOTest.text(try await IOTest.receiveAll(client)))
            out.append("client send after shutdown: \(IOTest.kind(await IOTest.error { try await client.sendAll([1]) }))")
            return out
        }
        #expect(r == ["last words", "eof again: true", "bye", "client send after shutdown: SocketError(EPIPE)"])
    }

    @Test(.timeLimit(.minutes(1)))
    func closeTwiceIsHarmlessAndClosingClosesOnThrow() async throws {
        let r = try await IOTest.run { () -> [String] in
            let s = try Socket(.inet, .stream)
            s.close()
            s.close()
            var out = ["fd \(s.fd)"]
            let t = try Socket(.inet, .stream)
            struct Oops: Error {}
            do {
                try await t.closing { _ in throw Oops() }
            } catch is Oops {
                out.append("thrown")
            }
            out.append("closed \(t.fd)")
            let u = try Socket(.inet, .stream)
            let v = await u.closing { $0.fd >= 0 }
            out.append("value \(v) closed \(u.fd)")
            return out
        }
        #expect(r == ["fd -1", "thrown", "closed -1", "value true closed -1"])
    }

    @Test(.timeLimit(.minutes(1)))
    func useAfterCloseIsEBADF() async throws {
        let r = try await IOTest.run { () -> [String] in
            let s = try Socket(.inet, .stream)
            s.close()
            let u = try Socket(.inet, .datagram)
            u.close()
            let somewhere = try SocketAddress(host: "127.0.0.1", port: 9)
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1)
            defer { buf.deallocate() }
            let attempts: [(String, () async throws -> Void)] = [
                ("recv", { _ = try await s.recv(10) }),
                ("recvInto", { _ = try await s.recv(into: buf) }),
                ("send", { _ = try await s.send([1]) }),
                ("sendAll", { try await s.sendAll([1]) }),
                ("accept", { _ = try await s.accept() }),
                ("connect", { try await s.connect(somewhere) }),
                ("recvFrom", { _ = try await u.recvFrom(10) }),
                ("sendTo", { _ = try await u.sendTo([1], somewhere) }),
                ("bind", { try s.bind(("127.0.0.1", 0)) }),
                ("listen", { try s.listen() }),
                ("setOption", { try s.setOption(.reuseAddress, true) }),
                ("getOption", { _ = try s.getOption(.reuseAddress) }),
                ("localAddress", { _ = try s.localAddress }),
                ("peerAddress", { _ = try s.peerAddress }),
                ("shutdown", { try s.shutdown(.both) }),
            ]
            var out: [String] = []
            for (name, body) in attempts {
                out.append("\(name): \(IOTest.kind(await IOTest.error(body)))")
            }
            return out
        }
        let names = ["recv", "recvInto", "send", "sendAll", "accept", "connect", "recvFrom", "sendTo", "bind",
                     "listen", "setOption", "getOption", "localAddress", "peerAddress", "shutdown"]
        #expect(r == names.map { "\($0): SocketError(EBADF)" })
    }

    @Test(.timeLimit(.minutes(1)))
    func connectRefused() async throws {
        let r = try await IOTest.run { () -> [String] in
            // A bound socket that does not listen holds the port for us.
            let holder = try Socket(.inet, .stream)
            defer { holder.close() }
            try holder.bind(("127.0.0.1", 0))
            let addr = try holder.localAddress
            let s = try Socket(.inet, .stream)
            defer { s.close() }
            let e = await IOTest.error { try await s.connect(addr) }
            let text = (e as? SocketError)?.description ?? ""
            return [IOTest.kind(e), "\(text.contains("connect") && text.contains("\(addr.port)"))"]
        }
        #expect(r == ["SocketError(ECONNREFUSED)", "true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func closeEndsAPendingReceiveWithAnError() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close() }
            let reader = try await spawn { () async throws -> String in
                IOTest.kind(await IOTest.error { _ = try await server.recv(100) })
            }
            try await IOTest.waitBlocked(reader, .readWait)
            server.close()
            let seen = try await reader.join() ?? "nil"
            return ["\(seen.hasPrefix("SocketError"))", "fd \(server.fd)"]
        }
        #expect(r == ["true", "fd -1"])
    }

    @Test(.timeLimit(.minutes(1)))
    func twoTasksReceivingOnOneSocketIsResourceBusy() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let first = try await spawn { () async throws -> String in
                IOTest.text(try await server.recv(10))
            }
            try await IOTest.waitBlocked(first, .readWait)
            var out: [String] = []
            // A larger receive than the pending one: it must not touch the
            // buffer the pending receive fills.
            let e1 = await IOTest.error { _ = try await server.recv(1 << 20) }
            out.append("recv: \(IOTest.kind(e1)) \((e1 as? ResourceBusy)?.description.contains("receiving") ?? false)")
            let e2 = await IOTest.error {
                let b = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1)
                defer { b.deallocate() }
                _ = try await server.recv(into: b)
            }
            out.append("recv(into:): \(IOTest.kind(e2))")
            out.append("accept: \(IOTest.kind(await IOTest.error { _ = try await server.accept() }))")
            try await client.sendAll(IOTest.bytes("ping"))
            out.append("first got \(try await first.join() ?? "nil")")
            // Free again once the first receive has ended.
            try await client.sendAll(IOTest.bytes("pong"))
            out.append("then \(IOTest.text(try await server.recv(10)))")
            return out
        }
        #expect(r == ["recv: ResourceBusy true", "recv(into:): ResourceBusy", "accept: ResourceBusy",
                      "first got ping", "then pong"])
    }

    @Test(.timeLimit(.minutes(1)))
    func twoTasksSendingOnOneSocketIsResourceBusy() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair(receiveBuffer: 16384, sendBuffer: 16384)
            defer { client.close(); server.close() }
            let big = IOTest.pattern(8 << 20)
            let sender = try await spawn { () async throws -> String in
                IOTest.kind(await IOTest.error { try await client.sendAll(big) })
            }
            try await IOTest.waitBlocked(sender, .writeWait)
            let e = await IOTest.error { _ = try await client.send([1, 2, 3]) }
            let out = ["send: \(IOTest.kind(e)) \((e as? ResourceBusy)?.description.contains("sending") ?? false)"]
            try await sender.cancel()
            return out + ["sender: \(try await sender.join() ?? "nil")"]
        }
        #expect(r == ["send: ResourceBusy true", "sender: TaskCancelled"])
    }

    @Test(.timeLimit(.minutes(1)))
    func aSocketUsedFromAnotherKernelIsWrongKernel() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            // Both sockets now belong to this kernel.
            try await client.sendAll(IOTest.bytes("x"))
            _ = try await server.recv(1)
            // A second kernel on a worker thread tries to use them.
            let seen = try await runInThread { () throws -> [String] in
                try Kernel().run { () async throws -> [String] in
                    [
                        IOTest.kind(await IOTest.error { _ = try await server.recv(10) }),
                        IOTest.kind(await IOTest.error { try await client.sendAll([1]) }),
                        IOTest.kind(await IOTest.error { _ = try await server.accept() }),
                    ]
                }
            }
            // Still fine here.
            try await client.sendAll(IOTest.bytes("ok"))
            return seen + [IOTest.text(try await IOTest.receive(server, count: 2))]
        }
        #expect(r == ["CurioUsageError.wrongKernel", "CurioUsageError.wrongKernel", "CurioUsageError.wrongKernel", "ok"])
    }

    @Test(.timeLimit(.minutes(1)))
    func blockingCallsOutsideAKernelAreNotInKernel() async throws {
        let s = try Socket(.inet, .stream)
        defer { s.close() }
        let e = await IOTest.error { _ = try await s.recv(10) }
        #expect(IOTest.kind(e) == "CurioUsageError.notInKernel")
    }

    @Test(.timeLimit(.minutes(1)))
    func recvOfZeroOrLessBytesIsAUsageError() async throws {
        let r = try await IOTest.run { () -> [String] in
            let (client, server) = try await IOTest.tcpPair()
            defer { client.close(); server.close() }
            let u = try Socket(.inet, .datagram)
            defer { u.close() }
            let e0 = await IOTest.error { _ = try await server.recv(0) }
            return [
                IOTest.kind(e0),
                "\((e0 as? CurioUsageError)?.message.contains("maxBytes") ?? false)",
                IOTest.kind(await IOTest.error { _ = try await server.recv(-1) }),
                IOTest.kind(await IOTest.error { _ = try await u.recvFrom(0) }),
            ]
        }
        #expect(r == ["CurioUsageError.invalidArgument", "true", "CurioUsageError.invalidArgument",
                      "CurioUsageError.invalidArgument"])
    }

    @Test(.timeLimit(.minutes(1)))
    func socketAddresses() throws {
        let v4 = try SocketAddress(host: "127.0.0.1", port: 8080)
        #expect(v4.family == .inet && v4.host == "127.0.0.1" && v4.port == 8080)
        #expect(v4.description == "('127.0.0.1', 8080)")
        #expect(try SocketAddress(host: "localhost", port: 1) == SocketAddress(host: "127.0.0.1", port: 1))
        #expect(try SocketAddress(host: "", port: 0).host == "0.0.0.0")
        let v6 = try SocketAddress(host: "::1", port: 443)
        #expect(v6.family == .inet6 && v6.host == "::1" && v6.port == 443)
        #expect(try SocketAddress(host: "", port: 0, family: .inet6).host == "::")
        #expect(try SocketAddress(host: "localhost", port: 0, family: .inet6).host == "::1")
        let unix = try SocketAddress(unixPath: "/tmp/x.sock")
        #expect(unix.family == .unix && unix.host == "/tmp/x.sock" && unix.port == 0)
        #expect(unix.description == "'/tmp/x.sock'")
        #expect(Set([v4, v4, v6]).count == 2)
        for bad in [{ _ = try SocketAddress(host: "not.numeric", port: 1) },
                    { _ = try SocketAddress(host: "127.0.0.1", port: 70000) },
                    { _ = try SocketAddress(host: "127.0.0.1", port: -1) },
                    { _ = try SocketAddress(host: "::zz", port: 1) },
                    { _ = try SocketAddress(unixPath: "") },
                    { _ = try SocketAddress(unixPath: String(repeating: "a", count: 200)) },
                    { _ = try SocketAddress(host: "x", port: 1, family: .unix) }] as [() throws -> Void] {
            #expect(throws: CurioUsageError.self) { try bad() }
        }
    }
}
