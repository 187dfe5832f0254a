import Foundation

/// Runs blocking work (waiting for a child process, reading a pipe, starting PostgreSQL) on a
/// thread of its own and suspends until it returns.
///
/// Not on `NIOThreadPool.singleton`: it has one thread per core (two here), and the suite's
/// database creation queues there (which also bounds how many tests open PostgreSQL
/// connections at once). Long waits there (a server's graceful stop, a child's output) held
/// that queue, and on a slow machine CLI tests ran out their time limits with their own waits
/// still queued.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.stackSize = 1 << 20
        thread.start()
    }
}
