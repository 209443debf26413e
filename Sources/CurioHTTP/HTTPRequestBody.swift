import HTTPTypes

/// A request body as an async sequence of byte chunks, read from the
/// connection as the handler asks for them (so an upload is never held in
/// memory unless the handler collects it).
///
/// ```swift
/// for try await chunk in request.body { try await file.write(chunk) }
/// let all = try await request.body.collect(upTo: 1 << 20)
/// ```
///
/// A request with `Expect: 100-continue` gets its `100 Continue` when the
/// handler first reads the body; a handler that answers without reading it
/// spares the client the upload (and the connection then closes). Reads
/// throw ``HTTPProtocolError`` for a malformed (400), oversized (413) or
/// truncated (400) body, and with status 408 when the client stalls for
/// longer than ``HTTPServerConfiguration/bodyReadTimeout``; a handler that
/// rethrows it answers with that status. The body can be read only while
/// its request is being handled.
public struct HTTPRequestBody: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    public typealias Failure = any Error

    /// The connection is used only by its own task (the handler runs in
    /// it), and `generation` ties this body to one request of it.
    let connection: HTTPConnection?
    let generation: Int

    /// The `Content-Length` of the request, nil when chunked or absent.
    public let declaredLength: Int?

    /// A body with no bytes.
    static let none = HTTPRequestBody(connection: nil, generation: 0, declaredLength: 0)

    public struct AsyncIterator: AsyncIteratorProtocol {
        let body: HTTPRequestBody
        public mutating func next() async throws -> [UInt8]? {
            guard let c = body.connection else { return nil }
            return try await c.nextBodyChunk(generation: body.generation)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(body: self) }

    /// The whole body, or ``HTTPBodyTooLarge`` once it is longer than
    /// `maxBytes` (the connection then closes after the response).
    public func collect(upTo maxBytes: Int) async throws -> [UInt8] {
        if let n = declaredLength, n > maxBytes { throw HTTPBodyTooLarge(limit: maxBytes) }
        var all: [UInt8] = []
        if let n = declaredLength { all.reserveCapacity(n) }
        for try await chunk in self {
            if all.count + chunk.count > maxBytes { throw HTTPBodyTooLarge(limit: maxBytes) }
            all.append(contentsOf: chunk)
        }
        return all
    }

    /// The trailer fields of a chunked body, once it has been read to its
    /// end; nil before that or for other bodies.
    public var trailers: HTTPFields? {
        connection?.bodyTrailers(generation: generation)
    }
}
