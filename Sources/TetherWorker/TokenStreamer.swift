import NIOCore
import NIOPosix
import Synchronization
import TetherCore

/// Streams the tokens of one model turn into an execution's log: each token waits the pacer's delay, then is
/// appended, and the next waits for that append to be stored (one token per append, in order).
///
/// It is driven by event-loop callbacks (``Pacer``, ``ExecutionStore/submitAppend(_:fence:events:)``), so no task
/// wakes up per token: the agent's task waits once for the whole turn. A failed append (``AppendError/fenced``,
/// Redis trouble) ends the turn with that error; ``cancel()`` ends it with `CancellationError` (an append already
/// sent still lands, as it would have from the task).
final class TokenStreamer: Sendable {
    private struct State {
        var next = 0
        var done = false
    }

    private let store: ExecutionStore
    private let executionID: String
    private let fence: Int
    private let tokens: [String]
    private let pacer: Pacer
    private let promise: EventLoopPromise<Void>
    private let state = Mutex(State())

    init(store: ExecutionStore, executionID: String, fence: Int, tokens: [String], pacer: Pacer) {
        self.store = store
        self.executionID = executionID
        self.fence = fence
        self.tokens = tokens
        self.pacer = pacer
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? store.redis.configuration.eventLoopGroup.any()
        self.promise = loop.makePromise()
    }

    /// Streams every token; completes when the last is stored, or with the first error.
    func run() async throws {
        guard !tokens.isEmpty else {
            // Nothing left to send (a resumed turn whose text was all stored): the promise must still complete.
            finish(.success(()))
            return
        }
        try await withTaskCancellationHandler {
            pacer.after { self.appendNext() }
            try await promise.futureResult.get()
        } onCancel: {
            cancel()
        }
    }

    /// Ends the turn with `CancellationError` (no further token is sent).
    func cancel() {
        finish(.failure(CancellationError()))
    }

    private func appendNext() {
        guard let index = state.withLock({ $0.done ? nil : $0.next }) else { return }
        let event = NewEvent(.text, ["text": .string(tokens[index])])
        store.submitAppend(executionID, fence: fence, events: [event]).whenComplete { result in
            switch result {
            case .success:
                let more = self.state.withLock { state -> Bool? in
                    if state.done { return nil }
                    state.next += 1
                    return state.next < self.tokens.count
                }
                switch more {
                case true?: self.pacer.after { self.appendNext() }
                case false?: self.finish(.success(()))
                case nil: break
                }
            case .failure(let error):
                self.finish(.failure(error))
            }
        }
    }

    private func finish(_ result: Result<Void, any Error>) {
        let first = state.withLock { state -> Bool in
            defer { state.done = true }
            return !state.done
        }
        if first { promise.completeWith(result) }
    }
}
