import RedisKit
import Synchronization

/// Waits until Redis answers again after an outage: one `PING` every 100 ms for every waiter, however many
/// executions wait, and all of them go on the moment it answers (not after a per-execution backoff).
final class RedisProbe: Sendable {
    private struct State {
        var probing = false
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, any Error>] = [:]
    }

    private let redis: any RedisClientProtocol
    private let state = Mutex(State())

    init(redis: any RedisClientProtocol) { self.redis = redis }

    /// Returns once Redis answers a `PING`; throws `CancellationError` when the caller is cancelled first.
    func waitUntilAnswering() async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (startProbe, cancelled) = state.withLock { state -> (Bool, Bool) in
                    if Task.isCancelled { return (false, true) }
                    state.waiters[id] = continuation
                    if state.probing { return (false, false) }
                    state.probing = true
                    return (true, false)
                }
                if cancelled { continuation.resume(throwing: CancellationError()) }
                if startProbe { Task { await self.probe() } }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(throwing: CancellationError())
        }
    }

    private func probe() async {
        while true {
            if (try? await redis.send("PING")) != nil { break }
            if state.withLock({ $0.waiters.isEmpty }) { break }
            try? await Task.sleep(for: .milliseconds(100))
        }
        let waiters = state.withLock { state in
            state.probing = false
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }
}
