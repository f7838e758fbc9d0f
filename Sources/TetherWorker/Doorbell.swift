import Synchronization

/// A wake-up for one waiter: ``ring()`` ends the current ``wait(upTo:)`` at once, or the next one if nobody waits
/// (rings in between count once). The sharded job loop waits on it between reads of its N job streams.
final class Doorbell: Sendable {
    private struct State {
        var rung = false
        var waiter: CheckedContinuation<Void, Never>?
        var generation = 0
    }

    private let state = Mutex(State())

    /// Wakes the waiter (or the next one).
    func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.rung = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns when rung, after `timeout`, or at once if rung since the last wait; also when the task is cancelled.
    func wait(upTo timeout: Duration) async {
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
                    if state.rung || state.generation != generation {
                        state.rung = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            expire(generation)
        }
    }

    /// Ends the wait of `generation`, if it is still the one waiting.
    private func expire(_ generation: Int) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard state.generation == generation, let waiter = state.waiter else {
                // Not waiting yet: make the wait return at once when it starts.
                if state.generation == generation, state.waiter == nil { state.generation += 1 }
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }
}
