/// Runs `body` between `acquire` and `release`, releasing also when `body`
/// throws (the release error is then dropped: the body's error is the one
/// the caller needs). What every primitive's `withLock` does.
func holding<T>(_ acquire: () async throws -> Void, _ release: () async throws -> Void,
                _ body: () async throws -> T) async throws -> T {
    try await acquire()
    let value: T
    do {
        value = try await body()
    } catch {
        try? await release()
        throw error
    }
    try await release()
    return value
}
