import NIOCore
import NIOPosix
import Synchronization
import TetherCore

/// The demo model as a provider: offline, deterministic, no key. It streams its reply token by token, each token
/// `delay` after the previous one is stored (paced by ``Pacer``: one timer per event loop, and event-loop callbacks,
/// so no task wakes up per token), then its tool call, if any, as a start and one arguments fragment.
///
/// With no delay it hands every token over at once, and the recorder stores them in batches.
public struct DemoProvider: ModelProvider {
    let model = DemoModel()
    let pacer: Pacer

    /// Makes the provider with its pacing.
    public init(pacer: Pacer) { self.pacer = pacer }

    /// Streams the demo model's turn for the request.
    public func streamTurn(_ request: ModelRequest, into sink: any TurnSink) async throws {
        let turn = model.respond(Self.context(request))
        var events = DemoModel.tokens(turn.text).map { ModelEvent.textDelta($0) }
        if let call = turn.toolCall {
            let id = "call_" + Identifiers.token(16)
            events += [
                .toolCallStart(id: id, name: call.name), .toolCallDelta(id: id, arguments: call.input.rendered),
                .toolCallEnd(id: id),
            ]
        }
        let words = turn.text.split(separator: " ").count
        events += [.usage(input: nil, output: words), .finish(reason: turn.toolCall == nil ? "stop" : "tool_calls")]
        if pacer.delay == .zero {
            for event in events { _ = sink.emit(event) }
            return
        }
        let streamer = PacedEmitter(events: events, sink: sink, pacer: pacer)
        try await withTaskCancellationHandler {
            try await streamer.run()
        } onCancel: {
            streamer.cancel()
        }
    }

    /// What the demo model looks at: the last user text and the calls made since it, with their results.
    static func context(_ request: ModelRequest) -> ModelContext {
        var messages: [JSON] = []
        var calls: [(name: String, input: JSON, result: ToolResult)] = []
        for item in request.items {
            switch item {
            case .user(let content):
                messages.append(["role": "user", "content": content])
                // The calls the model looks at are this request's: those of an earlier exchange of the
                // conversation were answered then.
                calls = []
            case .system(let text): messages.append(["role": "system", "content": .string(text)])
            case .assistant: break
            case .toolResult(let id, let name, let result):
                let input = request.items.lazy.compactMap { item -> JSON? in
                    guard case .assistant(_, let toolCalls) = item else { return nil }
                    return toolCalls.first { $0.id == id }?.input
                }.first
                calls.append((name, input ?? .null, result))
            }
        }
        return ModelContext(messages: .array(messages), toolCalls: calls)
    }
}

/// Hands events to a sink one at a time: each waits the pacer's delay after the previous one is stored.
final class PacedEmitter: Sendable {
    private let events: [ModelEvent]
    private let sink: any TurnSink
    private let pacer: Pacer
    private let promise: EventLoopPromise<Void>
    /// A struct, not a tuple: a tuple's type metadata is looked up at run time on every access (per token).
    private struct State {
        var next = 0
        var done = false
    }

    private let state = Mutex(State())

    init(events: [ModelEvent], sink: any TurnSink, pacer: Pacer) {
        self.events = events
        self.sink = sink
        self.pacer = pacer
        self.promise = MultiThreadedEventLoopGroup.singleton.any().makePromise()
    }

    func run() async throws {
        guard !events.isEmpty else {
            finish(.success(()))
            return
        }
        pacer.after { self.emitNext() }
        try await promise.futureResult.get()
    }

    func cancel() { finish(.failure(CancellationError())) }

    private func emitNext() {
        guard let index = state.withLock({ $0.done ? nil : $0.next }) else { return }
        sink.emit(events[index]).whenComplete { result in
            switch result {
            case .success:
                let more = self.state.withLock { state -> Bool? in
                    if state.done { return nil }
                    state.next += 1
                    return state.next < self.events.count
                }
                switch more {
                case true?:
                    // Only text is paced; tool-call events and the turn's end follow at once.
                    if case .textDelta = self.events[index + 1] {
                        self.pacer.after { self.emitNext() }
                    } else {
                        self.emitNext()
                    }
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
