#if canImport(Glibc)
import Glibc
#endif

/// A socket address: IPv4, IPv6 or a Unix path.
///
/// ```swift
/// let any = try SocketAddress(host: "", port: 25000)        // all IPv4 interfaces
/// let v6 = try SocketAddress(host: "::1", port: 8080)
/// let unix = try SocketAddress(unixPath: "/tmp/echo.sock")
/// print(any.host, any.port)
/// ```
///
/// Hosts here are numeric (plus `""` for any address and `"localhost"`);
/// resolve names with ``resolve(host:port:family:file:line:function:)`` first, which never
/// blocks the kernel thread.
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address family of a socket or an address.
    public enum Family: Sendable, Hashable {
        /// IPv4, IPv6 or a Unix-domain path.
        case inet, inet6, unix

        var raw: Int32 {
            switch self {
            case .inet: return AF_INET
            case .inet6: return AF_INET6
            case .unix: return AF_UNIX
            }
        }
    }

    var storage: sockaddr_storage
    var length: socklen_t

    /// The family of this address.
    public var family: Family {
        switch Int32(storage.ss_family) {
        case AF_INET6: return .inet6
        case AF_UNIX: return .unix
        default: return .inet
        }
    }

    init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    /// `0.0.0.0:0`, `[::]:0` or an unnamed Unix address: a peer whose
    /// address is no longer known.
    static func unspecified(_ family: Family) -> SocketAddress {
        var st = sockaddr_storage()
        st.ss_family = sa_family_t(family.raw)
        let length: Int
        switch family.raw {
        case AF_INET: length = MemoryLayout<sockaddr_in>.size
        case AF_INET6: length = MemoryLayout<sockaddr_in6>.size
        default: length = MemoryLayout<sa_family_t>.size
        }
        return SocketAddress(storage: st, length: socklen_t(length))
    }

    /// An IPv4 or IPv6 address from a numeric host. `""` means every
    /// interface (IPv4, or IPv6 when `family` is `.inet6`); `"localhost"`
    /// means the loopback address.
    public init(host: String, port: Int, family: Family? = nil) throws {
        guard (0...65535).contains(port) else {
            throw CurioUsageError(.invalidArgument, "port must be 0...65535, got \(port)")
        }
        var st = sockaddr_storage()
        let wantV6 = family == .inet6 || (family == nil && host.contains(":"))
        if family == .unix {
            throw CurioUsageError(.invalidArgument, "use SocketAddress(unixPath:) for a Unix socket address")
        }
        if wantV6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = UInt16(port).bigEndian
            let h = host == "localhost" ? "::1" : (host.isEmpty ? "::" : host)
            guard inet_pton(AF_INET6, h, &a.sin6_addr) == 1 else {
                throw CurioUsageError(.invalidArgument, "'\(host)' is not a numeric IPv6 address; resolve names with resolve(host:port:) first")
            }
            withUnsafeBytes(of: a) { src in
                withUnsafeMutableBytes(of: &st) { $0.copyMemory(from: src) }
            }
            self.init(storage: st, length: socklen_t(MemoryLayout<sockaddr_in6>.size))
        } else {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = UInt16(port).bigEndian
            let h = host == "localhost" ? "127.0.0.1" : (host.isEmpty ? "0.0.0.0" : host)
            guard inet_pton(AF_INET, h, &a.sin_addr) == 1 else {
                throw CurioUsageError(.invalidArgument, "'\(host)' is not a numeric IPv4 address; resolve names with resolve(host:port:) first")
            }
            withUnsafeBytes(of: a) { src in
                withUnsafeMutableBytes(of: &st) { $0.copyMemory(from: src) }
            }
            self.init(storage: st, length: socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }

    /// A Unix-domain socket address. Paths are limited to 107 bytes.
    public init(unixPath path: String) throws {
        var a = sockaddr_un()
        a.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: a.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw CurioUsageError(.invalidArgument, "a Unix socket path must be 1...\(capacity - 1) bytes, got \(bytes.count)")
        }
        withUnsafeMutableBytes(of: &a.sun_path) { dst in
            dst.copyBytes(from: bytes)
            dst[bytes.count] = 0
        }
        var st = sockaddr_storage()
        withUnsafeBytes(of: a) { src in
            withUnsafeMutableBytes(of: &st) { $0.copyMemory(from: src) }
        }
        let offset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
        self.init(storage: st, length: socklen_t(offset + bytes.count + 1))
    }

    /// The numeric host (`127.0.0.1`, `::1`) or, for Unix sockets, the path.
    public var host: String {
        var s = storage
        switch family {
        case .inet:
            return withUnsafePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                    var addr = p.pointee.sin_addr
                    var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
                    inet_ntop(AF_INET, &addr, &buf, socklen_t(buf.count))
                    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                }
            }
        case .inet6:
            return withUnsafePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                    var addr = p.pointee.sin6_addr
                    var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                    inet_ntop(AF_INET6, &addr, &buf, socklen_t(buf.count))
                    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                }
            }
        case .unix:
            let offset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
            let n = max(0, Int(length) - offset)
            return withUnsafeBytes(of: &s) { raw in
                let bytes = raw[offset..<(offset + n)].prefix { $0 != 0 }
                return String(decoding: bytes, as: UTF8.self)
            }
        }
    }

    /// The port (0 for Unix sockets).
    public var port: Int {
        var s = storage
        switch family {
        case .inet:
            return withUnsafePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            }
        case .inet6:
            return withUnsafePointer(to: &s) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
        case .unix:
            return 0
        }
    }

    /// `('127.0.0.1', 25000)`, like the seed's printed addresses.
    public var description: String {
        family == .unix ? "'\(host)'" : "('\(host)', \(port))"
    }

    public static func == (a: SocketAddress, b: SocketAddress) -> Bool {
        a.family == b.family && a.host == b.host && a.port == b.port
    }

    public func hash(into h: inout Hasher) {
        h.combine(host)
        h.combine(port)
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) rethrows -> R {
        var s = storage
        return try withUnsafePointer(to: &s) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) }
        }
    }
}
