import HTTPTypes

/// Field names the parser recognises without making strings: the ones that
/// steer framing, and the ones nearly every client sends.
struct KnownFieldName {
    enum Role {
        case host, contentLength, transferEncoding, connection, expect, other
    }
    let lowercase: StaticString
    let name: HTTPField.Name
    let role: Role

    /// Grouped by length so a lookup compares a few candidates at most.
    private static let byLength: [[KnownFieldName]] = {
        let all: [KnownFieldName] = [
            // Host becomes the request's authority (as in HTTP/2 and 3), not a field.
            .init(lowercase: "host", name: HTTPField.Name("Host")!, role: .host),
            .init(lowercase: "content-length", name: .contentLength, role: .contentLength),
            .init(lowercase: "transfer-encoding", name: .transferEncoding, role: .transferEncoding),
            .init(lowercase: "connection", name: .connection, role: .connection),
            .init(lowercase: "expect", name: .expect, role: .expect),
            .init(lowercase: "user-agent", name: .userAgent, role: .other),
            .init(lowercase: "accept", name: .accept, role: .other),
            .init(lowercase: "accept-encoding", name: .acceptEncoding, role: .other),
            .init(lowercase: "accept-language", name: .acceptLanguage, role: .other),
            .init(lowercase: "content-type", name: .contentType, role: .other),
            .init(lowercase: "cookie", name: .cookie, role: .other),
            .init(lowercase: "authorization", name: .authorization, role: .other),
            .init(lowercase: "cache-control", name: .cacheControl, role: .other),
            .init(lowercase: "te", name: .te, role: .other),
            .init(lowercase: "upgrade", name: .upgrade, role: .other),
            .init(lowercase: "referer", name: .referer, role: .other),
            .init(lowercase: "origin", name: .origin, role: .other),
            .init(lowercase: "if-none-match", name: .ifNoneMatch, role: .other),
            .init(lowercase: "if-modified-since", name: .ifModifiedSince, role: .other),
        ]
        var table = [[KnownFieldName]](repeating: [], count: 18)
        for k in all { table[k.lowercase.utf8CodeUnitCount].append(k) }
        return table
    }()

    /// The known name spelled by `range` (in any case), or nil.
    @inline(__always)
    static func match(_ b: UnsafeRawBufferPointer, _ range: Range<Int>) -> KnownFieldName? {
        guard range.count < byLength.count else { return nil }
        for k in byLength[range.count] where b.equalsIgnoringCase(range, k.lowercase) { return k }
        return nil
    }
}
