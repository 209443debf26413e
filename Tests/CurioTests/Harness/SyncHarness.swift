import Testing
@testable import Curio

// Helpers shared by the synchronization and queue tests (Lock, Semaphore,
// Condition, CurioResult, queues, fairness). Names carry a `Sync` prefix so
// they do not collide with other test files' helpers.

/// A mutable cell that tasks of one kernel share. Only one thread (the
/// kernel's) ever touches it.
final class SyncBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// SplitMix64: a small seeded generator so that a failing schedule can be
/// reproduced from its seed.
struct SyncRNG: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A generator shared by the tasks of one kernel.
final class SyncSharedRNG: @unchecked Sendable {
    private var rng: SyncRNG
    init(seed: UInt64) { rng = SyncRNG(seed: seed) }
    func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &rng) }
    func chance(_ percent: Int) -> Bool { int(0..<100) < percent }

    /// Nothing, a yield (`Curio.sleep(0)`) or a tiny sleep, at random.
    func pause() async throws {
        let r = int(0..<100)
        if r < 45 {
            try await Curio.sleep(0)
        } else if r < 50 {
            try await Curio.sleep(0.0002)
        }
    }
}

/// Runs `body` and checks that it throws a ``CurioUsageError`` of `kind`.
func expectSyncUsageError(_ kind: CurioUsageError.Kind, sourceLocation: SourceLocation = #_sourceLocation,
                          _ body: () async throws -> Void) async {
    do {
        try await body()
        Issue.record("expected CurioUsageError.\(kind), nothing was thrown", sourceLocation: sourceLocation)
    } catch let e as CurioUsageError {
        #expect(e.kind == kind, "\(e)", sourceLocation: sourceLocation)
        #expect(!e.message.isEmpty, sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected CurioUsageError.\(kind), got \(error)", sourceLocation: sourceLocation)
    }
}

/// Yields (`Curio.sleep(0)`) until `condition` holds; records an issue if
/// it never does.
func syncYieldUntil(_ what: String = "", sourceLocation: SourceLocation = #_sourceLocation,
                    _ condition: () -> Bool) async throws {
    for _ in 0..<10_000 {
        if condition() { return }
        try await Curio.sleep(0)
    }
    Issue.record("never happened: \(what)", sourceLocation: sourceLocation)
}

/// Invalid timeouts every `timeout:` must reject.
let syncBadTimeouts: [Double] = [-1, -0.001, .nan, .infinity, -.infinity]
