// AsyncFile: open modes (r, w, a, x, each with +), read / readLine / lines,
// write, seek and position (read-ahead is not counted as consumed), append
// mode, sync, and the errors: an unknown mode, a missing file, an existing
// file with x, reading a write-only file, writing a read-only one, use after
// close, calls outside a kernel. Each test works in a directory of its own
// under /tmp, removed afterwards.
import Glibc
import Testing

@testable import Curio

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// A fresh directory, removed (with its files) by `remove()`.
private struct TempDir: Sendable {
    let path: String
    init() throws {
        var template = Array("/tmp/curio-file-test-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else {
            throw KernelHarness.Failure(description: "mkdtemp failed: \(String(cString: strerror(errno)))")
        }
        path = String(cString: p)
    }
    func file(_ name: String) -> String { "\(path)/\(name)" }
    /// Writes `content` with plain system calls.
    func create(_ name: String, _ content: String, mode: mode_t = 0o644) {
        let fd = open(file(name), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        precondition(fd >= 0)
        let bytes = Array(content.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }
    /// Reads a file with plain system calls.
    func contents(_ name: String) -> String? {
        let fd = open(file(name), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return text(out)
    }
    func remove() {
        guard let d = opendir(path) else { return }
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { unlink(file(name)) }
        }
        closedir(d)
        rmdir(path)
    }
}

/// What an AsyncFile call threw, in short.
private func failure(_ body: () async throws -> Void) async -> String {
    do {
        try await body()
        return "no error"
    } catch let e as FileError {
        return "FileError \(e.errno) \(e.operation)"
    } catch let e as CurioUsageError {
        return "CurioUsageError.\(e.kind)"
    } catch {
        return "\(type(of: error))"
    }
}

@Suite(.timeLimit(.minutes(1)))
struct FileTests {
    @Test(.timeLimit(.minutes(1)))
    func writeThenReadBack() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file("a.txt")
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            let w = try await AsyncFile.open(path, "w")
            try await w.write("hello\n")
            try await w.write(Array("world\n".utf8))
            seen.append("written at \(w.position)")
            try await w.sync()
            w.close()
            let f = try await AsyncFile.open(path)  // "r" by default
            seen.append(text(try await f.read()))
            seen.append("eof '\(text(try await f.read()))' at \(f.position)")
            f.close()
            return seen
        }
        #expect(r == ["written at 12", "hello\nworld\n", "eof '' at 12"])
        #expect(dir.contents("a.txt") == "hello\nworld\n")
    }

    @Test(.timeLimit(.minutes(1)))
    func readLineLinesAndPartialReads() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        dir.create("lines.txt", "a\nbb\n\nccc")
        let path = dir.file("lines.txt")
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            let f = try await AsyncFile.open(path, "r")
            defer { f.close() }
            for _ in 0..<5 { seen.append("[\(text(try await f.readLine()))]") }
            try f.seek(0)
            var lines: [String] = []
            for try await line in f { lines.append(text(line)) }
            seen.append(lines.joined(separator: "|"))
            // Sized reads, after a readLine that read ahead.
            try f.seek(0)
            seen.append("[\(text(try await f.readLine()))] at \(f.position)")
            seen.append("[\(text(try await f.read(2)))] at \(f.position)")
            seen.append("[\(text(try await f.read(0)))] at \(f.position)")
            seen.append("[\(text(try await f.read()))] at \(f.position)")
            return seen
        }
        #expect(r == ["[a\n]", "[bb\n]", "[\n]", "[ccc]", "[]",
                      "a\n|bb\n|\n|ccc",
                      "[a\n] at 2", "[bb] at 4", "[] at 4", "[\n\nccc] at 9"])
    }

    @Test(.timeLimit(.minutes(1)))
    func seekAndPosition() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        dir.create("s.txt", "hello\nworld\n")
        let path = dir.file("s.txt")
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            let f = try await AsyncFile.open(path, "r")
            defer { f.close() }
            seen.append("\(try f.seek(6)) \(text(try await f.read(5))) \(f.position)")
            seen.append("\(try f.seek(-6, from: .end)) \(text(try await f.read()))")
            try f.seek(1)
            _ = try await f.read(1)
            seen.append("\(try f.seek(2, from: .current)) \(text(try await f.read(2)))")
            seen.append("past end \(try f.seek(100)) '\(text(try await f.read()))'")
            seen.append(await failure { try f.seek(-1) })
            seen.append(await failure { try f.seek(-20, from: .end) })
            return seen
        }
        #expect(r == ["6 world 11", "6 world\n", "4 o\n", "past end 100 ''",
                      "FileError \(EINVAL) seek to -1", "FileError \(EINVAL) seek to -8"])
    }

    @Test(.timeLimit(.minutes(1)))
    func readPlusWritesWhereTheReaderStopped() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        dir.create("rw.txt", "hello\nworld\n")
        let path = dir.file("rw.txt")
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            let f = try await AsyncFile.open(path, "r+")
            seen.append(text(try await f.readLine()))
            // The read-ahead holds "world\n"; the write goes at offset 6.
            try await f.write("WORLD")
            seen.append("at \(f.position)")
            seen.append("rest '\(text(try await f.read()))'")
            try f.seek(0)
            seen.append(text(try await f.read()))
            f.close()
            // w+ truncates, then reads back what it wrote.
            let g = try await AsyncFile.open(path, "w+")
            seen.append("truncated '\(text(try await g.read()))'")
            try await g.write("new")
            try g.seek(0)
            seen.append(text(try await g.read()))
            g.close()
            return seen
        }
        #expect(r == ["hello\n", "at 11", "rest '\n'", "hello\nWORLD\n", "truncated ''", "new"])
        #expect(dir.contents("rw.txt") == "new")
    }

    @Test(.timeLimit(.minutes(1)))
    func appendModeWritesAtTheEnd() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        dir.create("log.txt", "x\n")
        let path = dir.file("log.txt")
        let newPath = dir.file("new.txt")
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            let a = try await AsyncFile.open(path, "a")
            seen.append("starts at \(a.position)")
            try await a.write("y\n")
            // A seek does not move appends: they always go at the end.
            try a.seek(0)
            try await a.write("z\n")
            seen.append(await failure { _ = try await a.read() })
            a.close()
            let ap = try await AsyncFile.open(path, "a+")
            try await ap.write("w\n")
            try ap.seek(0)
            seen.append(text(try await ap.read()))
            ap.close()
            // "a" creates a missing file.
            let n = try await AsyncFile.open(newPath, "a")
            try await n.write("first\n")
            n.close()
            return seen
        }
        #expect(r == ["starts at 2", "FileError \(EBADF) read: file not open for reading", "x\ny\nz\nw\n"])
        #expect(dir.contents("log.txt") == "x\ny\nz\nw\n")
        #expect(dir.contents("new.txt") == "first\n")
    }

    @Test(.timeLimit(.minutes(1)))
    func exclusiveCreate() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        dir.create("exists.txt", "old")
        let existing = dir.file("exists.txt"), fresh = dir.file("fresh.txt")
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            seen.append(await failure { _ = try await AsyncFile.open(existing, "x") })
            let f = try await AsyncFile.open(fresh, "x+")
            try await f.write("made")
            try f.seek(0)
            seen.append(text(try await f.read()))
            f.close()
            return seen
        }
        #expect(r == ["FileError \(EEXIST) open", "made"])
        #expect(dir.contents("exists.txt") == "old")
    }

    @Test(.timeLimit(.minutes(1)))
    func errors() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        dir.create("r.txt", "data")
        let readable = dir.file("r.txt"), writable = dir.file("w.txt"), missing = dir.file("missing.txt")
        let r = try await KernelHarness.run { _ -> [String] in
            var seen: [String] = []
            for mode in ["q", "rw", "", "r++x", "wa"] {
                seen.append("mode '\(mode)': " + (await failure { _ = try await AsyncFile.open(readable, mode) }))
            }
            seen.append(await failure { _ = try await AsyncFile.open(missing) })
            do {
                _ = try await AsyncFile.open(missing, "r+")
            } catch let e as FileError {
                seen.append("\(e.path == missing) \(e.description.contains("missing.txt"))")
            }
            let w = try await AsyncFile.open(writable, "w")
            seen.append(await failure { _ = try await w.read() })
            seen.append(await failure { _ = try await w.readLine() })
            w.close()
            let ro = try await AsyncFile.open(readable, "r")
            seen.append(await failure { try await ro.write("no") })
            ro.close()
            ro.close()  // closing twice is harmless
            seen.append(await failure { _ = try await ro.read() })
            seen.append(await failure { try ro.seek(0) })
            return seen
        }
        #expect(r == [
            "mode 'q': CurioUsageError.invalidArgument",
            "mode 'rw': CurioUsageError.invalidArgument",
            "mode '': CurioUsageError.invalidArgument",
            "mode 'r++x': CurioUsageError.invalidArgument",
            "mode 'wa': CurioUsageError.invalidArgument",
            "FileError \(ENOENT) open",
            "true true",
            "FileError \(EBADF) read: file not open for reading",
            "FileError \(EBADF) readLine: file not open for reading",
            "FileError \(EBADF) write: file not open for writing",
            "FileError \(EBADF) read on a closed file",
            "FileError \(EBADF) seek on a closed file",
        ])
        #expect(dir.contents("r.txt") == "data")
    }

    @Test(.timeLimit(.minutes(1)))
    func largeFileInChunks() async throws {
        let dir = try TempDir()
        defer { dir.remove() }
        let path = dir.file("big.bin")
        let data = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        let r = try await KernelHarness.run { _ -> (Bool, Bool, Int64, Int) in
            let w = try await AsyncFile.open(path, "wb")
            try await w.write(data)
            w.close()
            let f = try await AsyncFile.open(path, "rb")
            defer { f.close() }
            var back: [UInt8] = []
            while true {
                let chunk = try await f.read(10_007)
                if chunk.isEmpty { break }
                back += chunk
            }
            try f.seek(0)
            let all = try await f.read()
            var lines = 0
            try f.seek(0)
            for try await _ in f { lines += 1 }
            return (back == data, all == data, f.position, lines)
        }
        #expect(r.0, "chunked read differs")
        #expect(r.1, "read() differs")
        #expect(r.2 == 300_000)
        #expect(r.3 == data.filter { $0 == UInt8(ascii: "\n") }.count + (data.last == UInt8(ascii: "\n") ? 0 : 1))
    }

    @Test(.timeLimit(.minutes(1)))
    func outsideAKernelIsAUsageError() async throws {
        await expectSyncUsageError(.notInKernel) { _ = try await AsyncFile.open("/etc/hostname") }
    }
}
