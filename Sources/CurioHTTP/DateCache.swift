#if canImport(Glibc)
import Glibc
#endif

/// The `Date` header line (RFC 9110 §6.6.1, IMF-fixdate), formatted at most
/// once a second: each response appends the cached bytes.
struct DateCache {
    private var second = -1
    private(set) var line: [UInt8] = []

    private static let days: [StaticString] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months: [StaticString] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" for the current second.
    mutating func current() -> [UInt8] {
        var now = time(nil)
        if now != second {
            second = now
            var tm = Glibc.tm()
            gmtime_r(&now, &tm)
            line = DateCache.format(tm)
        }
        return line
    }

    static func format(_ tm: Glibc.tm) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(40)
        out.append(contentsOf: "Date: ".utf8)
        append(days[Int(tm.tm_wday)], &out)
        out.append(contentsOf: ", ".utf8)
        two(Int(tm.tm_mday), &out)
        out.append(32)
        append(months[Int(tm.tm_mon)], &out)
        out.append(32)
        let year = Int(tm.tm_year) + 1900
        two(year / 100, &out)
        two(year % 100, &out)
        out.append(32)
        two(Int(tm.tm_hour), &out)
        out.append(58)
        two(Int(tm.tm_min), &out)
        out.append(58)
        two(Int(tm.tm_sec), &out)
        out.append(contentsOf: " GMT\r\n".utf8)
        return out
    }

    private static func append(_ s: StaticString, _ out: inout [UInt8]) {
        out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    private static func two(_ n: Int, _ out: inout [UInt8]) {
        out.append(UInt8(48 + n / 10))
        out.append(UInt8(48 + n % 10))
    }
}
