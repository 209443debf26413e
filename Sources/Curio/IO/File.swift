#if canImport(Glibc)
import Glibc
#endif

/// A file whose reads and writes suspend the calling task instead of
/// blocking the kernel: io_uring reads and writes on the default build,
/// a worker thread on epoll (epoll cannot wait for regular files).
///
/// ```swift
/// let f = try await AsyncFile.open("/etc/hosts")
/// for try await line in f { print(String(decoding: line, as: UTF8.self), terminator: "") }
/// try await f.close()
/// ```
///
/// Modes as Python's `open`: `r`, `w`, `a`, `x`, each with an optional `+`.
// @unchecked Sendable: the descriptor state, direction claims and buffers
// are touched only by the tasks of the kernel the object is bound to
// (`affinity.task` checks the caller's kernel first); `close` from another
// thread hands the descriptor to that kernel (`closeRegistered`).
public final class AsyncFile: AsyncSequence, @unchecked Sendable {
    /// Where ``seek(_:from:)`` counts from.
    public enum Whence: Sendable {
        /// From the file's start (`SEEK_SET`).
        case start
        /// From the current offset (`SEEK_CUR`).
        case current
        /// From the file's end (`SEEK_END`).
        case end
    }

    /// The descriptor, or -1 once closed.
    public private(set) var fd: Int32
    /// The path the file was opened with.
    public let path: String
    private let appending: Bool
    private let readable: Bool
    private let writable: Bool
    /// Offset of the next byte the descriptor would read or write.
    private var offset: Int64 = 0
    /// Read-ahead for readLine: bytes from offset - readAhead.count.
    private var readAhead: [UInt8] = []
    private let affinity = Affinity()
    /// Where reads land and writes are copied to (see ``PinnedBuffer``).
    private var pinned = PinnedBuffer()
    /// A task is reading or writing: the buffer is in use.
    private var busy = false
    /// Longest line ``AsyncFile/readLine(file:line:function:)`` accepts.
    public var maxLineLength = 1 << 20

    private init(fd: Int32, path: String, appending: Bool, readable: Bool, writable: Bool) {
        self.fd = fd
        self.path = path
        self.appending = appending
        self.readable = readable
        self.writable = writable
    }

    deinit {
        if fd >= 0 { closeRegistered(fd, kernel: affinity.kernel) }
    }

    /// Opens `path` (on a worker thread: open(2) can block on slow disks
    /// and network filesystems).
    public static func open(_ path: String, _ mode: String = "r", permissions: mode_t = 0o644,
                            file: StaticString = #filePath, line: UInt = #line,
                            function: StaticString = #function) async throws -> AsyncFile {
        let plus = mode.contains("+")
        var flags: Int32
        switch mode.replacingPlus {
        case "r", "rb": flags = plus ? O_RDWR : O_RDONLY
        case "w", "wb": flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_TRUNC
        case "a", "ab": flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_APPEND
        case "x", "xb": flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_EXCL
        default:
            throw CurioUsageError(.invalidArgument, "AsyncFile.open: unknown mode '\(mode)'; use r, w, a or x, optionally with + (and b)")
        }
        flags |= O_CLOEXEC
        let openFlags = flags
        let fd = try await runInThread(file: file, line: line, function: function) { () throws -> Int32 in
            let fd = Glibc.open(path, openFlags, permissions)
            if fd < 0 { throw FileError(errno: errno, operation: "open", path: path) }
            return fd
        }
        let f = AsyncFile(fd: fd, path: path, appending: flags & O_APPEND != 0,
                          readable: flags & O_ACCMODE != O_WRONLY, writable: flags & O_ACCMODE != O_RDONLY)
        if f.appending { f.offset = Int64(lseek(fd, 0, SEEK_END)) }
        return f
    }

    private func task(_ what: StaticString, needs readOrWrite: Bool?) throws -> AnyCurioTask {
        let t = try affinity.task(what)
        if fd < 0 { throw FileError(errno: EBADF, operation: "\(what) on a closed file", path: path) }
        if readOrWrite == true && !readable { throw FileError(errno: EBADF, operation: "\(what): file not open for reading", path: path) }
        if readOrWrite == false && !writable { throw FileError(errno: EBADF, operation: "\(what): file not open for writing", path: path) }
        return t
    }

    /// Claims the file for one read or write (its buffer and position are
    /// in use until `busy` is cleared), or throws ResourceBusy.
    private func claim(_ what: StaticString, needs readOrWrite: Bool) throws -> AnyCurioTask {
        let t = try task(what, needs: readOrWrite)
        if busy { throw ResourceBusy("another task is already reading or writing \(path)") }
        busy = true
        return t
    }

    /// One read(2)/write(2) at `at` from or into the file's pinned buffer,
    /// which the claim keeps for this call alone (Kernel.transferFile).
    private func transfer(_ t: AnyCurioTask, write: Bool, _ buf: UnsafeMutableRawPointer, _ count: Int,
                          at: Int64, site: CallSite) async throws -> Int {
        try await t.kernel.transferFile(t, fd: fd, write: write, buf, count: count, offset: at,
                                        appending: appending, site: site)
    }

    /// Reads into the read-ahead; false at end of file.
    private func fill(_ t: AnyCurioTask, _ chunk: Int, _ site: CallSite) async throws -> Bool {
        let chunk = Swift.min(chunk, PinnedBuffer.limit)
        let buf = pinned.region(chunk)
        let r = try await transfer(t, write: false, buf.baseAddress!, chunk, at: offset, site: site)
        if r < 0 { throw FileError(errno: Int32(-r), operation: "read", path: path) }
        if r == 0 { return false }
        offset += Int64(r)
        readAhead.append(contentsOf: UnsafeRawBufferPointer(start: buf.baseAddress, count: r))
        return true
    }

    private func takeAhead(_ n: Int) -> [UInt8] {
        let out = Array(readAhead.prefix(n))
        readAhead.removeFirst(out.count)
        return out
    }

    /// Up to `maxBytes` bytes from the current position (one read of at
    /// most 64 KiB when nothing is read ahead, so a huge `maxBytes` costs
    /// only what arrives); everything to the end of the file when
    /// `maxBytes` is negative; empty at end of file.
    public func read(_ maxBytes: Int = -1, file: StaticString = #filePath, line: UInt = #line,
                     function: StaticString = #function) async throws -> [UInt8] {
        let t = try claim("read", needs: true)
        defer { busy = false }
        let site = CallSite(file: file, line: line, function: function)
        if maxBytes < 0 {
            while try await fill(t, 65536, site) {}
            return takeAhead(readAhead.count)
        }
        if readAhead.isEmpty && maxBytes > 0 { _ = try await fill(t, maxBytes, site) }
        return takeAhead(maxBytes)
    }

    /// One line with its `\n` (the last may lack it); empty at end of file.
    public func readLine(file: StaticString = #filePath, line: UInt = #line,
                         function: StaticString = #function) async throws -> [UInt8] {
        let t = try claim("readLine", needs: true)
        defer { busy = false }
        let site = CallSite(file: file, line: line, function: function)
        var scanned = 0
        while true {
            if let i = readAhead[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                return takeAhead(i + 1)
            }
            scanned = readAhead.count
            if scanned > maxLineLength { throw LineTooLong(limit: maxLineLength) }
            if try await !fill(t, 65536, site) { return takeAhead(readAhead.count) }
        }
    }

    /// Writes all of `bytes` at the current position (at the end in append
    /// mode).
    public func write(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line,
                      function: StaticString = #function) async throws {
        let t = try claim("write", needs: false)
        defer { busy = false }
        let site = CallSite(file: file, line: line, function: function)
        // Bytes read ahead were not consumed: the write goes where the
        // reader stopped.
        offset -= Int64(readAhead.count)
        readAhead.removeAll()
        var done = 0
        while done < bytes.count {
            // Copied into the file's own buffer: the system never holds a
            // pointer into the array.
            let (buf, n) = pinned.load(bytes, from: done)
            var chunkDone = 0
            while chunkDone < n {
                let r: Int
                do {
                    r = try await transfer(t, write: true, buf.baseAddress! + chunkDone, n - chunkDone,
                                           at: offset, site: site)
                } catch let e as CancelledError {
                    throw withProgress(e, bytesSent: done + chunkDone)
                }
                if r < 0 { throw FileError(errno: Int32(-r), operation: "write", path: path) }
                chunkDone += r
                offset += Int64(r)
            }
            done += n
        }
    }

    /// Writes a string's UTF-8 bytes.
    public func write(_ text: String, file: StaticString = #filePath, line: UInt = #line,
                      function: StaticString = #function) async throws {
        try await write(Array(text.utf8), file: file, line: line, function: function)
    }

    /// Moves the position → the new position.
    @discardableResult
    public func seek(_ to: Int64, from whence: Whence = .start) throws -> Int64 {
        if fd < 0 { throw FileError(errno: EBADF, operation: "seek on a closed file", path: path) }
        let current = offset - Int64(readAhead.count)
        let target: Int64
        switch whence {
        case .start: target = to
        case .current: target = current + to
        case .end:
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw FileError(errno: errno, operation: "fstat", path: path) }
            target = Int64(st.st_size) + to
        }
        guard target >= 0 else { throw FileError(errno: EINVAL, operation: "seek to \(target)", path: path) }
        offset = target
        readAhead.removeAll()
        return target
    }

    /// The current position.
    public var position: Int64 { offset - Int64(readAhead.count) }

    /// Flushes the file's data to the device (fsync, on a worker thread).
    public func sync() async throws {
        _ = try task("sync", needs: nil)
        let fd = self.fd, path = self.path
        try await runInThread {
            if fsync(fd) != 0 { throw FileError(errno: errno, operation: "fsync", path: path) }
        }
    }

    /// Closes the file.
    public func close() {
        guard fd >= 0 else { return }
        closeRegistered(fd, kernel: affinity.kernel ?? Kernel.current)
        fd = -1
    }

    // MARK: Lines

    public typealias Element = [UInt8]
    public typealias Failure = any Error

    /// Yields the file's lines from the current position.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let file: AsyncFile
        public mutating func next() async throws -> [UInt8]? {
            let line = try await file.readLine()
            return line.isEmpty ? nil : line
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(file: self) }
}

/// A file operation failed.
public struct FileError: Error, CustomStringConvertible, Equatable {
    /// The system's error number.
    public let errno: Int32
    /// What failed (`open`, `read`, `write`, ...).
    public let operation: String
    /// The file it failed on.
    public let path: String
    public var description: String { "FileError: \(operation) '\(path)': \(String(cString: strerror(errno))) (errno \(errno))" }
}

private extension String {
    var replacingPlus: String { filter { $0 != "+" } }
}
