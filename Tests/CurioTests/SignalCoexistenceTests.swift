// SignalSet and other signal users in one process: a handler installed
// before Curio keeps seeing its signals (chained, plain and SA_SIGINFO);
// taking over an ignored signal (what Dispatch sources and
// swift-service-lifecycle set up) is said once on stderr; a handler
// installed over Curio's is chained to at the next watch and kept when the
// watches end. Each runs in a child process: dispositions are process-wide.
import Glibc
import Synchronization
import Testing

@testable import Curio

/// What the foreign handlers saw (a signal handler can reach only globals).
private let plainHits = Atomic<Int>(0)
private let infoHits = Atomic<Int>(0)
private let infoFromSelf = Atomic<Int>(0)

private func countPlain(_ sig: Int32) { plainHits.add(1, ordering: .relaxed) }
private func countInfo(_ sig: Int32, _ info: UnsafeMutablePointer<siginfo_t>?, _ ctx: UnsafeMutableRawPointer?) {
    infoHits.add(1, ordering: .relaxed)
    if info?.pointee._sifields._kill.si_pid == getpid() { infoFromSelf.add(1, ordering: .relaxed) }
}

/// How many times `needle` occurs in `text`.
private func occurrences(of needle: String, in text: String) -> Int {
    var count = 0
    var rest = Substring(text)
    while let r = rest.firstRange(of: needle) {
        count += 1
        rest = rest[r.upperBound...]
    }
    return count
}

@Suite(.timeLimit(.minutes(1)))
struct SignalCoexistenceTests {
    // MARK: Scenarios (child processes)

    static func install(_ sig: Int32, plain: Bool) {
        var sa = sigaction()
        if plain {
            sa.__sigaction_handler.sa_handler = countPlain
        } else {
            sa.__sigaction_handler.sa_sigaction = countInfo
            sa.sa_flags = SA_SIGINFO
        }
        sigemptyset(&sa.sa_mask)
        sigaction(sig, &sa, nil)
    }

    static func currentIsPlainCounter(_ sig: Int32) -> Bool {
        var sa = sigaction()
        sigaction(sig, nil, &sa)
        let mine: @convention(c) (Int32) -> Void = countPlain
        return sa.sa_flags & SA_SIGINFO == 0
            && unsafeBitCast(sa.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(mine, to: Int.self)
    }

    static func isIgnored(_ sig: Int32) -> Bool {
        var sa = sigaction()
        sigaction(sig, nil, &sa)
        return sa.sa_flags & SA_SIGINFO == 0
            && unsafeBitCast(sa.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
    }

    /// Waits (yielding) until `condition` holds, at most 10 s.
    static func settle(_ condition: () -> Bool) async throws {
        try await IOTest.waitUntil("a foreign handler ran", limit: 10, condition)
    }

    static func chainScenario() throws {
        install(SIGUSR2, plain: true)
        install(SIGUSR1, plain: false)
        try Curio.run {
            let set = SignalSet(SIGUSR2, SIGUSR1)
            try await set.watch {
                kill(getpid(), SIGUSR2)
                SoundScenario.say("GOT \(signalName(try await set.wait(timeout: 10) ?? 0))")
                try await settle { plainHits.load(ordering: .relaxed) == 1 }
                kill(getpid(), SIGUSR1)
                SoundScenario.say("GOT \(signalName(try await set.wait(timeout: 10) ?? 0))")
                try await settle { infoHits.load(ordering: .relaxed) == 1 }
            }
        }
        SoundScenario.say("PLAIN \(plainHits.load(ordering: .relaxed)) INFO \(infoHits.load(ordering: .relaxed)) FROM-SELF \(infoFromSelf.load(ordering: .relaxed))")
        SoundScenario.say("RESTORED \(currentIsPlainCounter(SIGUSR2))")
    }

    static func ignoredScenario() throws {
        signal(SIGUSR2, SIG_IGN)  // as a Dispatch signal source's owner does
        try Curio.run {
            for _ in 0..<2 {
                let set = SignalSet(SIGUSR2)
                try await set.watch {
                    kill(getpid(), SIGUSR2)
                    SoundScenario.say("GOT \(signalName(try await set.wait(timeout: 10) ?? 0))")
                }
                SoundScenario.say("IGNORED AGAIN \(isIgnored(SIGUSR2))")
            }
        }
    }

    static func reclaimScenario() throws {
        try Curio.run {
            let outer = SignalSet(SIGUSR2)
            try await outer.watch {
                install(SIGUSR2, plain: true)  // someone replaces Curio's handler
                let inner = SignalSet(SIGUSR2)
                try await inner.watch {
                    kill(getpid(), SIGUSR2)
                    SoundScenario.say("INNER \(signalName(try await inner.wait(timeout: 10) ?? 0))")
                    SoundScenario.say("OUTER \(signalName(try await outer.wait(timeout: 10) ?? 0))")
                    try await settle { plainHits.load(ordering: .relaxed) == 1 }
                }
            }
        }
        SoundScenario.say("FOREIGN \(plainHits.load(ordering: .relaxed)) KEPT \(currentIsPlainCounter(SIGUSR2))")
    }

    // MARK: Tests

    @Test func anEarlierHandlerStillSeesTheSignal() throws {
        let r = try SoundScenario.run("signal-chain")
        #expect(r.lines == ["GOT SIGUSR2", "GOT SIGUSR1", "PLAIN 1 INFO 1 FROM-SELF 1", "RESTORED true", "END"],
                "status \(r.status); stderr: \(r.stderr)")
        #expect(!r.stderr.contains("curio:"), "nothing to report: \(r.stderr)")
    }

    @Test func takingAnIgnoredSignalIsSaidOnce() throws {
        let r = try SoundScenario.run("signal-ignored")
        #expect(r.lines == ["GOT SIGUSR2", "IGNORED AGAIN true", "GOT SIGUSR2", "IGNORED AGAIN true", "END"],
                "status \(r.status); stderr: \(r.stderr)")
        let warnings = occurrences(of: "SIGUSR2 was ignored", in: r.stderr)
        #expect(warnings == 1, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("Dispatch signal source"))
    }

    @Test func aHandlerInstalledOverCurioIsChainedAndKept() throws {
        let r = try SoundScenario.run("signal-reclaim")
        #expect(r.lines == ["INNER SIGUSR2", "OUTER SIGUSR2", "FOREIGN 1 KEPT true", "END"],
                "status \(r.status); stderr: \(r.stderr)")
        let warnings = occurrences(of: "replaced Curio's for SIGUSR2", in: r.stderr)
        #expect(warnings == 1, "stderr: \(r.stderr)")
    }
}
