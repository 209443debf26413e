#if canImport(Glibc)
import Glibc
#endif

/// One line typed at the monitor, parsed. Parsing never runs anything: the
/// monitor acts on the result, and a line that is not a well-formed command
/// becomes a ``reply(_:)`` with the error to print.
enum MonitorCommand: Equatable, Sendable {
    case empty
    case help
    case ps
    case tree
    case quit
    case whereIs(Int)
    case cancel(Int)
    case parents(Int)
    case signal(Int32)
    /// Nothing to do but print this (usage, refusal, unknown command).
    case reply(String)

    /// Longest line the monitor reads, newline excluded.
    static let maxLine = 4096

    /// The signals `signal` sends: the ones a program handles as requests
    /// (reload, interrupt, terminate, the two user signals, a window
    /// change). Never KILL, STOP, SEGV, ABRT and the like: the monitor asks
    /// the program, it does not break it.
    static let allowedSignals: [Int32] = [SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH]

    static var allowedSignalList: String {
        let names = allowedSignals.map(signalName)
        return names.dropLast().joined(separator: ", ") + " or " + names.last!
    }

    static let usageSignal = "Usage: signal NAME (for example: signal SIGHUP)\n"

    /// Parses one line (without its newline).
    static func parse(_ line: String) -> MonitorCommand {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
        guard let first = words.first else { return .empty }
        let cmd = String(first)
        let arg = words.count > 1 ? String(words[1]) : nil
        func id(_ usage: String, _ make: (Int) -> MonitorCommand) -> MonitorCommand {
            guard let arg, let n = Int(arg) else { return .reply("Usage: \(usage) ID\n") }
            return make(n)
        }
        switch cmd {
        case "help", "h", "?": return .help
        case "ps": return .ps
        case "tree": return .tree
        case "quit", "q", "exit": return .quit
        case "where", "w": return id("where") { .whereIs($0) }
        case "cancel": return id("cancel") { .cancel($0) }
        case "parents": return id("parents") { .parents($0) }
        case "signal":
            guard let arg, let sig = signalFromText(arg) else { return .reply(usageSignal) }
            guard allowedSignals.contains(sig) else {
                return .reply("Refused: the monitor sends only signals a program handles as requests (\(allowedSignalList)); not \(signalName(sig)).\n")
            }
            return .signal(sig)
        default:
            return .reply("Unknown command '\(cmd.prefix(40))'. Type help for commands.\n")
        }
    }

    /// `HUP`, `SIGHUP` or `1`; nil for anything else.
    static func signalFromText(_ text: String) -> Int32? {
        if let n = Int32(text) { return (1..<32).contains(n) ? n : nil }
        return signalNumber(text)
    }

    /// True when every byte is printable ASCII, a tab or a carriage return:
    /// the only lines a remote client may send.
    static func isPrintable(_ bytes: some Collection<UInt8>) -> Bool {
        bytes.allSatisfy { $0 == 9 || $0 == 13 || (32..<127).contains($0) }
    }

    static let helpText = """
        Commands:
         ps               : Show task table
         where taskid     : Show where a task is blocked
         cancel taskid    : Cancel a task
         parents taskid   : Show a task and the tasks that spawned it
         tree             : Show tasks as a tree of parents and children
         signal signame   : Send a signal the program handles as a request:
                            \(allowedSignalList) (never KILL, STOP, SEGV, ...)
         help             : This help
         quit             : Leave the monitor (the program runs on)

        """
}

/// Cuts a byte stream into lines of at most ``MonitorCommand/maxLine``
/// bytes. It keeps at most one line's worth of bytes (plus what one read
/// adds), whatever arrives.
struct MonitorLineReader {
    enum Next: Equatable {
        /// A complete line, without its newline.
        case line([UInt8])
        /// A line longer than the limit (its bytes are dropped).
        case tooLong
    }

    private var buffer: [UInt8] = []
    /// Where the unread bytes start: lines are taken off the front without
    /// moving the rest each time.
    private var head = 0

    /// Bytes held and not yet returned as lines.
    var pending: Int { buffer.count - head }

    mutating func append(_ bytes: some Collection<UInt8>) {
        if head > 0 && head >= buffer.count / 2 {
            buffer.removeSubrange(..<head)
            head = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete line, or `.tooLong` once the unfinished or the next
    /// line exceeds the limit; nil when more bytes are needed.
    mutating func next() -> Next? {
        let limit = min(buffer.count, head + MonitorCommand.maxLine + 1)
        if let nl = buffer[head..<limit].firstIndex(of: UInt8(ascii: "\n")) {
            defer { head = nl + 1; if head == buffer.count { buffer.removeAll(keepingCapacity: true); head = 0 } }
            return .line(Array(buffer[head..<nl]))
        }
        if limit - head > MonitorCommand.maxLine {
            // No newline within the limit: too long, wherever it ends.
            reset()
            return .tooLong
        }
        return nil
    }

    mutating func reset() {
        buffer.removeAll()
        head = 0
    }
}
