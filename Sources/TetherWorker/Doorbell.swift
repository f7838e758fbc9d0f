import Synchronization

/// A wake-up for one waiter that says who rang: ``ring(_:)`` with a shard's number ends the current
/// ``wait(upTo:)`` at once, or the next one if nobody waits (rings in between are gathered). The sharded job loop
/// waits on it between reads, and then reads only the shards that rang.
final class Doorbell: Sendable {
    private struct State {
        var rung: Set<Int> = []
        var waiter: CheckedContinuation<Void, Never>?
        var generation = 0
    }

    private let state = Mutex(State())

    /// Notes that `shard` has news and wakes the waiter.
    func ring(_ shard: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.rung.insert(shard)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// The shards rung since the last call, without waiting.
    func take() -> Set<Int> {
        state.withLock { state in
            defer { state.rung = [] }
            return state.rung
        }
    }

    /// Returns the shards rung, as soon as one is (at once if one was since the last call); `nil` after `timeout`
    /// with none, or when the task is cancelled.
    func wait(upTo timeout: Duration) async -> Set<Int>? {
        let generation = state.withLock { state in
            state.generation += 1
            return state.generation
        }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            self?.expire(generation)
        }
        defer { timer.cancel() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if !state.rung.isEmpty || state.generation != generation { return true }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            expire(generation)
        }
        let rung = take()
        return rung.isEmpty ? nil : rung
    }

    /// Ends the wait of `generation`, if it is still the one waiting.
    private func expire(_ generation: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.generation == generation else { return nil }
            // Not waiting yet: make the wait return at once when it starts.
            guard let waiter = state.waiter else {
                state.generation += 1
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }
}
