/// Reads into memory the caller owns, for parsers that keep their own
/// buffer (CurioHTTP): no array is made per read.
extension SocketStream {
    /// Reads up to `buffer.count` bytes into `buffer` → how many (0 at end
    /// of stream). Bytes the stream has buffered come first (copied out);
    /// when none are, one receive goes straight into `buffer` on a
    /// ``Socket`` and through ``ByteChannel/recv(_:file:line:function:)``
    /// on any other channel. `buffer` must stay valid until this returns.
    ///
    /// A cancellation or timeout throws as ``read(_:file:line:function:)``
    /// does, with nothing read.
    public func read(into buffer: UnsafeMutableRawBufferPointer, file: StaticString = #filePath,
                     line: UInt = #line, function: StaticString = #function) async throws -> Int {
        guard buffer.count > 0 else { return 0 }
        // `buffer` (the stream's) is emptied whenever its last unread byte
        // is taken, so a non-empty one always holds unread bytes.
        if !self.buffer.isEmpty {
            let bytes = try await read(buffer.count, file: file, line: line, function: function)
            bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
            return bytes.count
        }
        do {
            if let socket = channel as? Socket {
                return try await socket.recv(into: buffer, file: file, line: line, function: function)
            }
            let bytes = try await channel.recv(buffer.count, file: file, line: line, function: function)
            bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
            return bytes.count
        } catch let e as CancelledError {
            throw withProgress(e, bytesRead: 0)
        }
    }
}
