// Networking helpers: resolve (numeric, localhost, names through
// getaddrinfo on a worker thread, a bad name), openConnection to
// tcpServer (port learned through a TCPListener), to a port nobody listens
// on, happy eyeballs ordering (interleaveFamilies), openUnixConnection to
// unixServer.
import Glibc
import Testing

@testable import Curio

@Suite(.timeLimit(.minutes(1)))
struct NetworkTests {
    @Test(.timeLimit(.minutes(1)))
    func resolveLocalhostAndNumericHosts() async throws {
        let r = try await IOTest.run { () -> [String] in
            var out: [String] = []
            let local = try await resolve(host: "localhost", port: 8080)
            out.append("localhost: \(!local.isEmpty) \(local.allSatisfy { $0.port == 8080 }) "
                       + "\(local.allSatisfy { ["127.0.0.1", "::1"].contains($0.host) })")
            let n4 = try await resolve(host: "127.0.0.1", port: 1)
            out.append("numeric v4: " + n4.map(\.description).joined(separator: ", "))
            let n6 = try await resolve(host: "::1", port: 2)
            out.append("numeric v6: " + n6.map(\.description).joined(separator: ", "))
            let v6 = try await resolve(host: "localhost", port: 3, family: .inet6)
            out.append("localhost as IPv6: " + v6.map(\.host).joined(separator: ", "))
            out.append("bad port: \(IOTest.kind(await IOTest.error { _ = try await resolve(host: "localhost", port: 70000) }))")
            return out
        }
        #expect(r == [
            "localhost: true true true",
            "numeric v4: ('127.0.0.1', 1)",
            "numeric v6: ('::1', 2)",
            "localhost as IPv6: ::1",
            "bad port: CurioUsageError.invalidArgument",
        ])
    }

    @Test(.timeLimit(.minutes(1)))
    func resolveANameThroughGetaddrinfo() async throws {
        // "LOCALHOST" is not the numeric shortcut's "localhost": it goes to
        // getaddrinfo on a worker thread (host names match in any case).
        let r = try await IOTest.run { () -> String in
            let addrs = try await resolve(host: "LOCALHOST", port: 80)
            let loopback = addrs.allSatisfy { $0.host == "127.0.0.1" || $0.host == "::1" }
            return "\(!addrs.isEmpty) \(addrs.allSatisfy { $0.port == 80 }) \(loopback) \(Set(addrs).count == addrs.count)"
        }
        #expect(r == "true true true true")
    }

    @Test(.timeLimit(.minutes(1)))
    func resolveOfABadNameIsResolutionError() async throws {
        let r = try await IOTest.run { () -> [String] in
            var out: [String] = []
            for host in ["no-such-host.invalid", "bad name with spaces"] {
                do {
                    let a = try await resolve(host: host, port: 80)
                    out.append("resolved \(a)")
                } catch let e as ResolutionError {
                    out.append("\(e.host) \(e.code != 0) \(e.description.hasPrefix("ResolutionError: cannot resolve '\(host)'"))")
                }
            }
            return out
        }
        #expect(r == ["no-such-host.invalid true true", "bad name with spaces true true"])
    }

    @Test(.timeLimit(.minutes(1)))
    func openConnectionToATCPServer() async throws {
        let r = try await IOTest.run { () -> [String] in
            let ready = TCPListener()
            let server = try await spawn {
                try await tcpServer(host: "127.0.0.1", port: 0, ready: ready) { client, addr in
                    try await client.write("hi \(addr)\n")
                    for try await line in client { try await client.write(line.reversed().dropFirst() + [10]) }
                }
            }
            let addr = try await ready.wait()
            var out = ["\(addr.host) \(addr.port > 0) \(ready.address == addr)"]
            for host in ["127.0.0.1", "localhost"] {
                let conn = try await openConnection(host: host, port: addr.port)
                defer { conn.close() }
                let me = try conn.socket!.localAddress
                let peer = try conn.socket!.peerAddress
                let hello = IOTest.text(try await conn.readLine())
                try await conn.write("abc\n")
                let reply = IOTest.text(try await conn.readLine())
                out.append("\(host): \(hello == "hi \(me)\n") \(peer == addr) \(reply)")
            }
            try await server.cancel()
            // The listener is closed with the server.
            out.append(await IOTest.connectAfterListenerClosed(port: addr.port))
            return out
        }
        #expect(r == ["127.0.0.1 true true", "127.0.0.1: true true cba\n", "localhost: true true cba\n",
                      "SocketError(ECONNREFUSED)"])
    }

    @Test(.enabled(if: IOTest.hasIPv6Loopback, "no IPv6 loopback on this machine"), .timeLimit(.minutes(1)))
    func openConnectionOverIPv6() async throws {
        let r = try await IOTest.run { () -> String in
            let ready = TCPListener()
            let server = try await spawn {
                try await tcpServer(host: "::1", port: 0, ready: ready) { client, _ in
                    try await client.write("v6\n")
                }
            }
            let addr = try await ready.wait()
            let conn = try await openConnection(host: "::1", port: addr.port)
            defer { conn.close() }
            let line = IOTest.text(try await conn.readAll())
            try await server.cancel()
            return "\(addr.family) \(try conn.socket!.peerAddress.host) \(line)"
        }
        #expect(r == "inet6 ::1 v6\n")
    }

    @Test(.timeLimit(.minutes(1)))
    func openConnectionToAPortNobodyListensOn() async throws {
        let r = try await IOTest.run { () -> [String] in
            // A bound socket that does not listen keeps the port ours.
            let holder = try Socket(.inet, .stream)
            defer { holder.close() }
            try holder.bind(("127.0.0.1", 0))
            let port = try holder.localAddress.port
            let e = await IOTest.error { _ = try await openConnection(host: "127.0.0.1", port: port) }
            let e2 = await IOTest.error { _ = try await openConnection(host: "no-such-host.invalid", port: port) }
            return [IOTest.kind(e), IOTest.kind(e2)]
        }
        #expect(r == ["SocketError(ECONNREFUSED)", "ResolutionError"])
    }

    @Test(.timeLimit(.minutes(1)))
    func happyEyeballsInterleavesTheFamilies() throws {
        func v4(_ i: Int) throws -> SocketAddress { try SocketAddress(host: "10.0.0.\(i)", port: 80) }
        func v6(_ i: Int) throws -> SocketAddress { try SocketAddress(host: "fd00::\(i)", port: 80) }
        func hosts(_ a: [SocketAddress]) -> [String] { a.map(\.host) }

        #expect(interleaveFamilies([]).isEmpty)
        #expect(hosts(interleaveFamilies([try v4(1)])) == ["10.0.0.1"])
        // Starts with the family of the first address, then alternates.
        #expect(hosts(interleaveFamilies([try v6(1), try v6(2), try v6(3), try v4(1), try v4(2)]))
                == ["fd00::1", "10.0.0.1", "fd00::2", "10.0.0.2", "fd00::3"])
        #expect(hosts(interleaveFamilies([try v4(1), try v4(2), try v6(1)]))
                == ["10.0.0.1", "fd00::1", "10.0.0.2"])
        #expect(hosts(interleaveFamilies([try v4(1), try v6(1), try v4(2), try v6(2), try v4(3)]))
                == ["10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2", "10.0.0.3"])
        // One family only: the order is kept.
        #expect(hosts(interleaveFamilies([try v6(3), try v6(1), try v6(2)])) == ["fd00::3", "fd00::1", "fd00::2"])
        // Nothing is lost or duplicated.
        let mixed = [try v6(1), try v4(1), try v4(2), try v4(3), try v6(2)]
        #expect(Set(interleaveFamilies(mixed)) == Set(mixed) && interleaveFamilies(mixed).count == mixed.count)
    }

    @Test(.timeLimit(.minutes(1)))
    func openUnixConnectionToAUnixServer() async throws {
        let dir = try IOTest.makeTempDirectory()
        defer { IOTest.removeDirectory(dir) }
        let path = dir + "/echo.sock"
        let r = try await IOTest.run { () -> [String] in
            let ready = TCPListener()
            let server = try await spawn {
                try await unixServer(path: path, ready: ready) { client, _ in
                    for try await line in client { try await client.write(line) }
                }
            }
            let addr = try await ready.wait()
            var out = ["\(addr.family) \(addr.host == path) \(IOTest.fileExists(path))"]
            var tasks: [CurioTask<String>] = []
            for i in 0..<4 {
                tasks.append(try await spawn { () async throws -> String in
                    let conn = try await openUnixConnection(path: path)
                    defer { conn.close() }
                    try await conn.write("unix \(i)\n")
                    return IOTest.text(try await conn.readLine())
                })
            }
            for t in tasks { out.append(try await t.join() ?? "nil") }
            try await server.cancel()
            out.append("socket file removed: \(!IOTest.fileExists(path))")
            out.append(IOTest.kind(await IOTest.error { _ = try await openUnixConnection(path: path) }))
            return out
        }
        #expect(r == ["unix true true", "unix 0\n", "unix 1\n", "unix 2\n", "unix 3\n", "socket file removed: true",
                      "SocketError(errno 2)"])
    }
}
