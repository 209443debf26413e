// SignalSet beside other signal users of the process: a handler installed
// before the watch keeps being called (chained), and an ignored signal (as
// ServiceGroup and Dispatch sources leave it) is taken over with one
// warning, through the user's logger, and ignored again afterwards.
import Curio
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What the consumer's own SIGUSR2 handler has seen.
let ownHandlerHits = Atomic<Int>(0)

func signalChecks() throws {
    var own = sigaction()
    own.__sigaction_handler.sa_handler = { _ in ownHandlerHits.add(1, ordering: .relaxed) }
    sigemptyset(&own.sa_mask)
    precondition(sigaction(SIGUSR2, &own, nil) == 0, "sigaction failed")
    signal(SIGWINCH, SIG_IGN)

    let records = KeepingLogHandler.Records()
    var configuration = Kernel.Configuration.default
    configuration.logger = Logger(label: "consumer.signals") { _ in KeepingLogHandler(records: records) }
    let kernel = Kernel(configuration: configuration)
    let (usr2, winch) = try kernel.run { () async throws -> (Int32?, [Int32?]) in
        let set = SignalSet(SIGUSR2)
        let usr2 = try await set.watch { () async throws -> Int32? in
            kill(getpid(), SIGUSR2)
            return try await set.wait(timeout: .seconds(10))
        }
        var winch: [Int32?] = []
        for _ in 1...2 {  // twice: the takeover is reported once
            let w = SignalSet(SIGWINCH)
            winch.append(try await w.watch { () async throws -> Int32? in
                kill(getpid(), SIGWINCH)
                return try await w.wait(timeout: .seconds(10))
            })
        }
        return (usr2, winch)
    }
    try kernel.shutdown()
    precondition(usr2 == SIGUSR2, "SignalSet got \(String(describing: usr2)) instead of SIGUSR2")
    precondition(ownHandlerHits.load(ordering: .relaxed) == 1,
                 "the consumer's own handler saw \(ownHandlerHits.load(ordering: .relaxed)) SIGUSR2")
    precondition(winch == [SIGWINCH, SIGWINCH], "SignalSet got \(winch) for SIGWINCH")
    let takeovers = records.all.filter { $0.message.contains("SIGWINCH") }
    precondition(takeovers.count == 1 && takeovers[0].level == .warning,
                 "the SIGWINCH takeover was logged \(takeovers.count) time(s): \(takeovers.map(\.message))")
    var now = sigaction()
    sigaction(SIGWINCH, nil, &now)
    precondition(address(now.__sigaction_handler.sa_handler) == address(SIG_IGN),
                 "SIGWINCH is no longer ignored after the watches")
    signal(SIGUSR2, SIG_DFL)
    print("signals: SIGUSR2 seen by SignalSet and the own handler; SIGWINCH takeover logged once")
}

/// A signal disposition as a number (SIG_IGN is 1, SIG_DFL 0).
private func address(_ handler: __sighandler_t?) -> Int {
    handler.map { unsafeBitCast($0, to: Int.self) } ?? 0
}
