import NIOCore
import NIOPosix
import Synchronization
import TetherCore

/// Records one model turn in the log as the provider streams it: text deltas with their part ids, tool-call starts
/// and argument fragments, in order, each its own entry.
///
/// Appends are pipelined one at a time: while one is in flight, the events that arrive queue up and go together in
/// the next (at most ``batchLimit`` per append), so a fast provider costs few script calls and a paced one (the
/// demo) one per token. Driven by event-loop callbacks: no task wakes up per event. The first failed append (the
/// lease was lost, Redis is away) fails every later event too; ``finish()`` rethrows it.
final class TurnRecorder: TurnSink, Sendable {
    /// Most events in one append.
    static let batchLimit = 256

    /// A tool call of the turn (a struct, not a tuple: a tuple's metadata is looked up at run time on every access).
    struct Call {
        var id: String
        var name: String
        var arguments: String
    }

    /// What the turn came to, once streamed and stored.
    struct Outcome {
        /// The calls in the order the model made them, with their complete arguments.
        var calls: [Call]
        var finishReason: String?
        var inputTokens: Int?
        var outputTokens: Int?
        /// The text stored, all parts together (what the log's text deltas of the turn add up to).
        var text: String
        /// Entries appended.
        var count: Int
        /// The id of the last entry appended, if any.
        var lastID: String?
        /// The newest entry before the turn's first append, and whether each later append followed the one before
        /// it with nothing in between: together, whether the turn's entries sit in the log with no other entry
        /// among them.
        var precededBy: String?
        var unbroken = true
    }

    /// What an appended event adds to the turn's stored output.
    private enum Effect {
        case text(String)
        case start(id: String, name: String)
        case arguments(index: Int, String)
    }

    private struct Batch {
        var events: [NewEvent]
        var effects: [Effect]
        /// For events that joined the batch while another append was in flight; the batch that goes out at once
        /// hands its caller the append's own future instead (no hop to another loop when the reply comes).
        let promise: EventLoopPromise<Void>?
    }

    /// What ``enqueue(_:_:_:)`` did with an event.
    private enum Queued {
        case stored(EventLoopFuture<Void>)
        case sendNow([NewEvent])
    }

    private struct State {
        var part = 0
        var partID = ""
        var inText = false
        /// The calls emitted (their index and arguments as streamed so far).
        var calls: [Call] = []
        /// The output appended so far: what a failure leaves in the log.
        var storedText = ""
        var storedCalls: [Call] = []
        var storedCount = 0
        var lastID: String?
        var precededBy: String?
        var unbroken = true
        var finishReason: String?
        var inputTokens: Int?
        var outputTokens: Int?
        /// Batches not yet stored; the first is in flight when `sending`.
        var queue: [Batch] = []
        var sending = false
        var failure: (any Error)?
        var drained: [EventLoopPromise<Void>] = []
    }

    let turnID: String
    private let store: ExecutionStore
    private let executionID: String
    private let fence: Int
    /// The newest entry the run appended before this turn (see ``ExecutionRun/ownLast``).
    private let ownLast: String?
    private let loop: any EventLoop
    private let state = Mutex(State())

    init(store: ExecutionStore, executionID: String, fence: Int, turnID: String, after ownLast: String?) {
        self.store = store
        self.executionID = executionID
        self.fence = fence
        self.ownLast = ownLast
        self.turnID = turnID
        self.loop = MultiThreadedEventLoopGroup.currentEventLoop ?? store.redis.eventLoopGroup.any()
    }

    /// Whether any output (text or a tool call) was recorded: a failure after that cannot be retried silently.
    var producedOutput: Bool { state.withLock { $0.part > 0 || !$0.calls.isEmpty } }

    func emit(_ event: ModelEvent) -> EventLoopFuture<Void> {
        let turn = JSON.string(turnID)
        let queued = state.withLock { state -> Queued? in
            func enqueue(_ event: NewEvent, _ effect: Effect, _ state: inout State) -> Queued {
                self.enqueue(event, effect, &state)
            }
            switch event {
            case .textDelta(let text):
                guard !text.isEmpty else { return nil }
                if !state.inText {
                    state.part += 1
                    state.partID = "p\(state.part)"
                    state.inText = true
                }
                return enqueue(
                    NewEvent.textDelta(turnID: turnID, partID: state.partID, text: text), .text(text), &state)
            case .toolCallStart(let id, let name):
                state.inText = false
                guard !state.calls.contains(where: { $0.id == id }) else { return nil }
                state.calls.append(Call(id: id, name: name, arguments: ""))
                return enqueue(
                    NewEvent(
                        .toolCallStart,
                        [
                            "turnId": turn, "toolCallId": .string(id), "toolName": .string(name),
                            "index": .number(Double(state.calls.count - 1)),
                        ]), .start(id: id, name: name), &state)
            case .toolCallDelta(let id, let arguments):
                guard !arguments.isEmpty, let index = state.calls.firstIndex(where: { $0.id == id }) else {
                    return nil
                }
                state.calls[index].arguments += arguments
                return enqueue(
                    NewEvent(
                        .toolCallDelta,
                        [
                            "turnId": turn, "toolCallId": .string(id), "index": .number(Double(index)),
                            "argumentsDelta": .string(arguments),
                        ]), .arguments(index: index, arguments), &state)
            case .toolCallEnd:
                return nil
            case .usage(let input, let output):
                if let input { state.inputTokens = input }
                if let output { state.outputTokens = output }
                return nil
            case .finish(let reason):
                state.finishReason = reason
                return nil
            }
        }
        switch queued {
        case .stored(let future):
            return future
        case .sendNow(let events):
            // Sent after the lock (the reply may come back on this thread); the caller waits on the append itself.
            return send(events).map { _ in }
        case nil:
            return loop.makeSucceededVoidFuture()
        }
    }

    /// Queues an event (state locked): it goes out at once when no append is in flight, else it joins the next.
    private func enqueue(_ event: NewEvent, _ effect: Effect, _ state: inout State) -> Queued {
        if let failure = state.failure { return .stored(loop.makeFailedFuture(failure)) }
        if let last = state.queue.indices.last, state.queue[last].events.count < Self.batchLimit,
            !(state.sending && last == 0), let promise = state.queue[last].promise
        {
            state.queue[last].events.append(event)
            state.queue[last].effects.append(effect)
            return .stored(promise.futureResult)
        }
        if !state.sending {
            state.sending = true
            state.queue.append(Batch(events: [event], effects: [effect], promise: nil))
            return .sendNow([event])
        }
        let promise = loop.makePromise(of: Void.self)
        state.queue.append(Batch(events: [event], effects: [effect], promise: promise))
        return .stored(promise.futureResult)
    }

    @discardableResult
    private func send(_ events: [NewEvent]) -> EventLoopFuture<ExecutionStore.Appended> {
        // One append in flight at a time: the one before has stored its ids by now.
        let after = state.withLock { $0.lastID } ?? ownLast
        let appended = store.submitAppend(executionID, fence: fence, events: events, after: after)
        appended.whenComplete { result in
            var toComplete: [EventLoopPromise<Void>] = []
            var next: [NewEvent]?
            var failure: (any Error)?
            self.state.withLock { state in
                let sent = state.queue.removeFirst()
                if let promise = sent.promise { toComplete.append(promise) }
                switch result {
                case .success(let appended):
                    if let last = state.lastID {
                        if appended.previous != last { state.unbroken = false }
                    } else {
                        state.precededBy = appended.previous
                    }
                    state.storedCount += sent.events.count
                    state.lastID = appended.ids.last ?? state.lastID
                    for effect in sent.effects {
                        switch effect {
                        case .text(let text): state.storedText += text
                        case .start(let id, let name): state.storedCalls.append(Call(id: id, name: name, arguments: ""))
                        case .arguments(let index, let fragment):
                            if index < state.storedCalls.count { state.storedCalls[index].arguments += fragment }
                        }
                    }
                    if let first = state.queue.first {
                        next = first.events
                    } else {
                        state.sending = false
                        toComplete += state.drained
                        state.drained = []
                    }
                case .failure(let error):
                    failure = error
                    state.failure = error
                    state.sending = false
                    toComplete += state.queue.compactMap(\.promise) + state.drained
                    state.queue = []
                    state.drained = []
                }
            }
            for promise in toComplete {
                if let failure { promise.fail(failure) } else { promise.succeed() }
            }
            if let next { self.send(next) }
        }
        return appended
    }

    /// Waits until every event emitted is stored; returns the turn's outcome, or throws the append failure.
    func finish() async throws -> Outcome {
        let wait = state.withLock { state -> EventLoopFuture<Void>? in
            if let failure = state.failure { return loop.makeFailedFuture(failure) }
            guard state.sending else { return nil }
            let promise = loop.makePromise(of: Void.self)
            state.drained.append(promise)
            return promise.futureResult
        }
        try await wait?.get()
        return state.withLock { state in
            Outcome(
                calls: state.storedCalls, finishReason: state.finishReason, inputTokens: state.inputTokens,
                outputTokens: state.outputTokens, text: state.storedText, count: state.storedCount,
                lastID: state.lastID, precededBy: state.precededBy, unbroken: state.unbroken)
        }
    }
}
