import Curio

/// The open connections of one server, for a graceful drain. Kernel-thread
/// only: the server and all its connections run on one kernel.
final class ConnectionRegistry: @unchecked Sendable {
    // Unchecked: used by the tasks of one kernel only (see above).
    private(set) var draining = false
    private var connections: [ObjectIdentifier: HTTPConnection] = [:]
    /// Connections still in their transport's opening (a TLS handshake):
    /// no request yet, so a drain treats them as idle.
    private var opening: [Int: AnyCurioTask] = [:]
    private var nextOpening = 0
    private let allClosed = Event()

    var count: Int { connections.count + opening.count }
    private var empty: Bool { connections.isEmpty && opening.isEmpty }

    /// Counts a connection whose opening starts → the key for ``endOpening(_:)``.
    func beginOpening(_ task: AnyCurioTask?) -> Int {
        nextOpening += 1
        if let task { opening[nextOpening] = task }
        return nextOpening
    }

    func endOpening(_ key: Int) async {
        opening[key] = nil
        if empty && draining { await allClosed.set() }
    }

    func add(_ c: HTTPConnection) {
        connections[ObjectIdentifier(c)] = c
        c.registry = self
    }

    func remove(_ c: HTTPConnection) async {
        connections[ObjectIdentifier(c)] = nil
        if empty && draining { await allClosed.set() }
    }

    /// Stops keep-alive: idle connections are cancelled at once, busy ones
    /// close after their current response.
    func startDrain() async throws {
        draining = true
        for c in connections.values where c.idle {
            if let t = c.task { _ = try await t.cancel(blocking: false) }
        }
        try await cancelOpenings()
        if empty { await allClosed.set() }
    }

    /// Waits until every connection has closed; after `timeout` seconds
    /// the ones still open are cancelled.
    func waitUntilClosed(timeout: Double) async throws {
        if empty { return }
        if try await curioIgnoreAfter(timeout, { try await allClosed.wait() }) == nil {
            for c in connections.values {
                if let t = c.task { _ = try await t.cancel(blocking: false) }
            }
            try await cancelOpenings()
            try await allClosed.wait()
        }
    }

    /// Cancels every connection (the server itself was cancelled).
    func cancelAll() async throws {
        draining = true
        for c in connections.values {
            if let t = c.task { _ = try await t.cancel(blocking: false) }
        }
        try await cancelOpenings()
    }

    private func cancelOpenings() async throws {
        for t in opening.values { _ = try await t.cancel(blocking: false) }
    }
}
