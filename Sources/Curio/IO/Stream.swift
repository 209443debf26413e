/// Something a ``SocketStream`` can read from and write to: a ``Socket``
/// or a ``Pipe`` end.
public protocol ByteChannel: AnyObject, Sendable {
    /// Up to `maxBytes` bytes; empty at end of stream.
    func recv(_ maxBytes: Int, file: StaticString, line: UInt, function: StaticString) async throws -> [UInt8]
    /// All of `bytes`; a cancellation half-way records `bytesSent`.
    func sendAll(_ bytes: [UInt8], file: StaticString, line: UInt, function: StaticString) async throws
    /// Closes the descriptor; pending requests on it end first.
    func close()
}

/// A buffered byte stream over a socket or a pipe: reads of exact sizes and lines,
/// writes of whole buffers, and `for try await line in stream`.
///
/// ```swift
/// let stream = SocketStream(client)
/// while let line = try await stream.readLine(), !line.isEmpty {
///     try await stream.write(line)
/// }
/// ```
///
/// Bytes the stream has received are never lost: a read that is cancelled
/// or times out leaves what arrived in the buffer for the next read, and
/// its error (``TaskCancelled`` or ``TaskTimeout``) says in `bytesRead` how
/// much that was.
// @unchecked Sendable: the buffer is touched only by tasks of the kernel
// the stream is bound to (every read checks `affinity` first, so a task of
// another kernel gets `.wrongKernel` before it touches anything); `channel`
// is immutable and Sendable.
public final class SocketStream: AsyncSequence, @unchecked Sendable {
    /// The socket or pipe underneath; the stream owns it and closes it.
    public let channel: any ByteChannel
    /// The socket underneath, when it is one.
    public var socket: Socket? { channel as? Socket }
    /// Longest line ``SocketStream/readLine(file:line:function:)`` accepts before throwing ``LineTooLong``.
    public var maxLineLength: Int
    private(set) var buffer: [UInt8] = []
    private var start = 0  // first unread byte of `buffer`
    private var eof = false
    private let chunk: Int
    private let affinity = Affinity()

    /// Wraps a socket or pipe. `chunk` is the most one receive asks for.
    public init(_ channel: any ByteChannel, chunk: Int = 65536, maxLineLength: Int = 65536) {
        self.channel = channel
        self.chunk = Swift.max(1, chunk)
        self.maxLineLength = maxLineLength
    }

    private var buffered: Int { buffer.count - start }

    /// Receives one more chunk into the buffer; false at end of stream.
    private func fill(_ file: StaticString, _ line: UInt, _ function: StaticString) async throws -> Bool {
        if eof { return false }
        // Drop the bytes already taken once they are at least half the
        // buffer (all of it when nothing is left unread), so a long stream
        // read in pieces (lines arriving faster than they are taken) keeps
        // a bounded buffer; moving the rest costs no more than what was taken.
        if start > 0 && start >= buffer.count - start {
            buffer.removeSubrange(0..<start)
            start = 0
        }
        let data = try await channel.recv(chunk, file: file, line: line, function: function)
        if data.isEmpty {
            eof = true
            return false
        }
        buffer.append(contentsOf: data)
        return true
    }

    private func take(_ n: Int) -> [UInt8] {
        let out = Array(buffer[start..<(start + n)])
        start += n
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        return out
    }

    /// Up to `maxBytes` bytes (what is buffered, else one receive); empty at
    /// end of stream. `read()` with no limit reads everything until the end.
    public func read(_ maxBytes: Int = -1, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> [UInt8] {
        _ = try affinity.task("SocketStream.read")
        if maxBytes < 0 { return try await readAll(file: file, line: line, function: function) }
        if maxBytes == 0 { return [] }
        if buffered == 0 {
            do {
                _ = try await fill(file, line, function)
            } catch let e as CancelledError {
                throw withProgress(e, bytesRead: 0)
            }
        }
        return take(Swift.min(maxBytes, buffered))
    }

    /// Everything until the peer closes its side.
    public func readAll(file: StaticString = #filePath, line: UInt = #line,
                        function: StaticString = #function) async throws -> [UInt8] {
        _ = try affinity.task("SocketStream.readAll")
        do {
            while try await fill(file, line, function) {}
        } catch let e as CancelledError {
            throw withProgress(e, bytesRead: buffered)
        }
        return take(buffered)
    }

    /// Exactly `n` bytes. Throws ``IncompleteRead`` (with the partial data,
    /// which is consumed) if the stream ends first.
    public func readExactly(_ n: Int, file: StaticString = #filePath, line: UInt = #line,
                            function: StaticString = #function) async throws -> [UInt8] {
        guard n >= 0 else { throw CurioUsageError(.invalidArgument, "readExactly: n must be >= 0, got \(n)") }
        _ = try affinity.task("SocketStream.readExactly")
        do {
            while buffered < n {
                if try await !fill(file, line, function) {
                    throw IncompleteRead(partial: take(buffered), expected: n)
                }
            }
        } catch let e as CancelledError {
            throw withProgress(e, bytesRead: buffered)
        }
        return take(n)
    }

    /// One line, with its `\n`; the rest at the end of the stream without
    /// one; empty at end of stream. Throws ``LineTooLong`` for a line longer
    /// than ``maxLineLength`` (the bytes stay buffered).
    public func readLine(file: StaticString = #filePath, line: UInt = #line,
                         function: StaticString = #function) async throws -> [UInt8] {
        _ = try affinity.task("SocketStream.readLine")
        var scanned = 0
        do {
            while true {
                if let i = buffer[(start + scanned)...].firstIndex(of: UInt8(ascii: "\n")) {
                    let n = i - start + 1
                    if n > maxLineLength { throw LineTooLong(limit: maxLineLength) }
                    return take(n)
                }
                scanned = buffered
                if scanned > maxLineLength { throw LineTooLong(limit: maxLineLength) }
                if try await !fill(file, line, function) { return take(buffered) }
            }
        } catch let e as CancelledError {
            throw withProgress(e, bytesRead: buffered)
        }
    }

    /// Writes all of `bytes`. A cancellation half-way says in `bytesSent`
    /// how many bytes went out.
    public func write(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line,
                      function: StaticString = #function) async throws {
        try await channel.sendAll(bytes, file: file, line: line, function: function)
    }

    /// Writes a string's UTF-8 bytes.
    public func write(_ text: String, file: StaticString = #filePath, line: UInt = #line,
                      function: StaticString = #function) async throws {
        try await write(Array(text.utf8), file: file, line: line, function: function)
    }

    /// Writes nothing: writes are not buffered, so there is nothing to
    /// flush. Here so code written for buffered streams reads naturally.
    public func flush() async throws {}

    /// Closes the socket or pipe.
    public func close() {
        channel.close()
    }

    // MARK: Lines as an async sequence

    public typealias Element = [UInt8]
    public typealias Failure = any Error

    /// Yields lines (with their `\n`) until the end of the stream.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let stream: SocketStream
        public mutating func next() async throws -> [UInt8]? {
            let line = try await stream.readLine()
            return line.isEmpty ? nil : line
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(stream: self) }

    /// The lines of the stream: `for try await line in stream.lines`.
    public var lines: SocketStream { self }
}

/// The stream ended before ``SocketStream/readExactly(_:file:line:function:)`` got its bytes.
public struct IncompleteRead: Error, CustomStringConvertible {
    /// What did arrive.
    public let partial: [UInt8]
    /// The bytes asked for.
    public let expected: Int
    /// The bytes the stream had before its end.
    public var bytesRead: Int { partial.count }
    public var description: String { "IncompleteRead: got \(partial.count) of \(expected) bytes before the end of the stream" }
}

/// A line longer than the stream's limit.
public struct LineTooLong: Error, CustomStringConvertible {
    /// The longest line accepted, in bytes (``SocketStream/maxLineLength``).
    public let limit: Int
    public var description: String { "LineTooLong: no newline within \(limit) bytes (raise SocketStream.maxLineLength to accept longer lines)" }
}
