/// The HTTP version of a request: 1.0 or 1.1 (the server answers 505 to
/// others).
public struct HTTPVersion: Sendable, Hashable, CustomStringConvertible {
    /// The number before the dot.
    public let major: Int
    /// The number after the dot.
    public let minor: Int
    /// HTTP/1.0: no keep-alive unless asked for, no chunked bodies.
    public static let http1_0 = HTTPVersion(major: 1, minor: 0)
    /// HTTP/1.1, the default.
    public static let http1_1 = HTTPVersion(major: 1, minor: 1)
    /// A version from its two numbers.
    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }
    public var description: String { "HTTP/\(major).\(minor)" }
}
