/// The byte classes of RFC 9110/9112 the parser checks, as branch-light
/// tests (no tables to initialise lazily, no bounds checks).
enum ByteClass {
    static let cr: UInt8 = 13
    static let lf: UInt8 = 10
    static let sp: UInt8 = 32
    static let htab: UInt8 = 9
    static let colon: UInt8 = 58

    /// tchar (RFC 9110 §5.6.2): the characters of tokens (methods, field names).
    @inline(__always)
    static func isTokenChar(_ b: UInt8) -> Bool {
        // Bit i of word w set when byte 64*w+i is a tchar.
        // !#$%&'*+-.0-9  ^_`a-z|~  A-Z
        let low: UInt64 = 0x03FF_6CFA_0000_0000
        let high: UInt64 = 0x57FF_FFFF_C7FF_FFFE
        if b < 64 { return (low >> UInt64(b)) & 1 == 1 }
        if b < 128 { return (high >> UInt64(b - 64)) & 1 == 1 }
        return false
    }

    /// field-vchar / obs-text / SP / HTAB (RFC 9110 §5.5): what a field
    /// value may hold. No CR, LF, NUL or other controls.
    @inline(__always)
    static func isFieldValueByte(_ b: UInt8) -> Bool {
        (b >= 0x20 && b != 0x7F) || b == htab
    }

    /// What a request-target may hold: visible ASCII (RFC 3986 characters
    /// and a few more that clients send unencoded, never space or controls).
    @inline(__always)
    static func isTargetByte(_ b: UInt8) -> Bool {
        b > 0x20 && b < 0x7F
    }

    @inline(__always)
    static func lower(_ b: UInt8) -> UInt8 {
        (b >= 65 && b <= 90) ? b | 0x20 : b
    }

    @inline(__always)
    static func hexValue(_ b: UInt8) -> Int? {
        switch b {
        case 48...57: return Int(b - 48)
        case 97...102: return Int(b - 87)
        case 65...70: return Int(b - 55)
        default: return nil
        }
    }
}

extension UnsafeRawBufferPointer {
    /// True when bytes `range` equal `lowercase` ignoring ASCII case.
    /// `lowercase` must be lowercase ASCII.
    @inline(__always)
    func equalsIgnoringCase(_ range: Range<Int>, _ lowercase: StaticString) -> Bool {
        guard range.count == lowercase.utf8CodeUnitCount else { return false }
        let s = lowercase.utf8Start
        var i = 0
        while i < range.count {
            if ByteClass.lower(self[range.lowerBound + i]) != s[i] { return false }
            i += 1
        }
        return true
    }

    /// The index of the first `byte` in `range`, or nil.
    @inline(__always)
    func firstIndex(of byte: UInt8, in range: Range<Int>) -> Int? {
        guard !range.isEmpty, let base = baseAddress else { return nil }
        guard let hit = memchr(base + range.lowerBound, Int32(byte), range.count) else { return nil }
        return base.distance(to: UnsafeRawPointer(hit))
    }

    /// The bytes of `range` with leading and trailing SP and HTAB removed.
    @inline(__always)
    func trimmingOWS(_ range: Range<Int>) -> Range<Int> {
        var lo = range.lowerBound, hi = range.upperBound
        while lo < hi && (self[lo] == ByteClass.sp || self[lo] == ByteClass.htab) { lo += 1 }
        while hi > lo && (self[hi - 1] == ByteClass.sp || self[hi - 1] == ByteClass.htab) { hi -= 1 }
        return lo..<hi
    }
}

#if canImport(Glibc)
import Glibc
#endif
