import Logging
import RedisKit
import Synchronization
import TetherCore

/// Runs one execution's agent loop for the worker holding its lease, from wherever the log says it stands.
///
/// Resuming: the state is rebuilt from the event log alone. A tool call whose result is logged is never run
/// again; a tool call waiting for approval waits again (the decision is read from Redis, so one made while no
/// worker was listening is honoured); a model turn cut short is generated again and only its missing part is
/// streamed (the demo model is deterministic).
public struct AgentRunner: Sendable {
    /// The store.
    public let store: ExecutionStore
    /// The model.
    public let model: DemoModel
    /// The tools by name.
    public let tools: [String: Tool]
    /// Pause between streamed tokens.
    public let tokenDelay: Duration
    /// Counts the executions waiting for a human decision (they do not hold a worker slot).
    public let waiting: WaitGauge
    /// Paces tokens (`tokenDelay` apart), one timer per event loop for every execution.
    let pacer: Pacer
    let logger: Logger

    /// Makes a runner.
    public init(
        store: ExecutionStore, model: DemoModel = DemoModel(), tools: [String: Tool] = DemoTools.all,
        tokenDelay: Duration, waiting: WaitGauge = WaitGauge(), logger: Logger
    ) {
        self.store = store
        self.model = model
        self.tools = tools
        self.tokenDelay = tokenDelay
        let (seconds, attoseconds) = tokenDelay.components
        self.pacer = Pacer(delay: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
        self.waiting = waiting
        self.logger = logger
    }

    struct Call {
        var id: String
        var name: String
        var input: JSON
        var result: ToolResult?
        var approvalRequested = false
    }

    struct Rebuilt {
        var calls: [Call] = []
        /// Text of the model turn in progress (after the last tool result, not yet ended by a tool call).
        var partialText = ""
        var finished = false
    }

    /// Runs the execution to its end (or until the lease is lost: ``AppendError/fenced``).
    public func run(_ executionID: String, fence: Int) async throws {
        guard let record = try await store.record(executionID) else { return }
        if record.status.isTerminal { return }
        let input = try await store.input(executionID) ?? .null
        let messages = input["messages"] ?? input
        do {
            try await loop(executionID, fence: fence, messages: messages)
        } catch let error as AppendError {
            throw error
        } catch let error as RedisError {
            // Redis trouble is not the agent's failure: the caller retries (the state is rebuilt from the log).
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            // The client gets a stable code and a message for humans; the error itself (Swift types, paths,
            // provider replies) goes only to the log, under the execution's id.
            logger.error("execution \(executionID) failed: \(String(reflecting: error))")
            try await store.append(
                executionID, fence: fence,
                events: [
                    NewEvent(
                        .error,
                        [
                            "code": "agent_error",
                            "message":
                                "The agent stopped on an internal error. The worker's log has the details under this execution's id.",
                        ]),
                    NewEvent(.finish, ["status": "failed"], status: .failed),
                ])
        }
    }

    private func loop(_ id: String, fence: Int, messages: JSON) async throws {
        // The log is read once; afterwards the state follows what this worker appends (it alone appends, by the
        // fence), except decisions, which settle() reads from Redis.
        var state = Rebuilt()
        for event in try await store.allEvents(id) { state.apply(event.type, event.json) }
        while true {
            if state.finished { return }
            // Redis calls that do not wait do not notice cancellation: check at every step, so that a worker
            // that is stopping hands the execution back at the next step instead of racing on to its end.
            try Task.checkCancellation()
            if let pending = state.calls.last, pending.result == nil {
                for event in try await settle(pending, id: id, fence: fence) {
                    state.apply(event.type.rawValue, event.data)
                }
                continue
            }
            let context = ModelContext(
                messages: messages, toolCalls: state.calls.map { ($0.name, $0.input, $0.result ?? .error("missing")) })
            let turn = model.respond(context)
            try await stream(turn.text, alreadySent: state.partialText, id: id, fence: fence)
            state.partialText = ""
            let event: NewEvent
            if let call = turn.toolCall {
                let callID = "call_" + Identifiers.token(16)
                event = NewEvent(
                    .toolCall, ["toolCallId": .string(callID), "toolName": .string(call.name), "input": call.input])
            } else {
                event = NewEvent(.finish, ["status": "completed"], status: .completed)
            }
            try await store.append(id, fence: fence, events: [event])
            state.apply(event.type.rawValue, event.data)
        }
    }

    /// Streams `text` token by token, skipping what a previous owner already streamed of it.
    private func stream(_ text: String, alreadySent: String, id: String, fence: Int) async throws {
        var remaining = Substring(text)
        if !alreadySent.isEmpty {
            if text.hasPrefix(alreadySent) {
                remaining = text.dropFirst(alreadySent.count)
            } else {
                logger.warning("execution \(id): the regenerated turn differs from the logged one; streaming it whole")
            }
        }
        let tokens = DemoModel.tokens(String(remaining))
        if tokenDelay == .zero {
            // As fast as possible: many tokens per script call.
            var start = 0
            while start < tokens.count {
                try Task.checkCancellation()
                let chunk = tokens[start..<min(start + 256, tokens.count)]
                try await store.append(id, fence: fence, events: chunk.map { NewEvent(.text, ["text": .string($0)]) })
                start += 256
            }
            return
        }
        try await TokenStreamer(store: store, executionID: id, fence: fence, tokens: tokens, pacer: pacer).run()
    }

    /// Brings a tool call without a result to its result (approval first when the tool needs it); returns the
    /// events it appended.
    private func settle(_ call: Call, id: String, fence: Int) async throws -> [NewEvent] {
        var appended: [NewEvent] = []
        func append(_ event: NewEvent) async throws {
            try await store.append(id, fence: fence, events: [event])
            appended.append(event)
        }
        guard let tool = tools[call.name] else {
            try await append(
                NewEvent(
                    .toolError, ["toolCallId": .string(call.id), "errorText": .string("unknown tool \(call.name)")]))
            return appended
        }
        if tool.needsApproval {
            if !call.approvalRequested {
                let approvalID = "appr_" + Identifiers.token(16)
                let request: JSON = [
                    "approvalId": .string(approvalID), "toolCallId": .string(call.id), "toolName": .string(call.name),
                    "input": call.input,
                    "requestedAt": .string(Identifiers.isoTimestamp(milliseconds: Identifiers.nowMilliseconds())),
                ]
                try await append(
                    NewEvent(
                        .approvalRequest,
                        [
                            "approvalId": .string(approvalID), "toolCallId": .string(call.id),
                            "toolName": .string(call.name), "input": call.input,
                        ], status: .suspended, approvalField: (call.id, request.rendered)))
            }
            let decision = try await waitForDecision(id, toolCallID: call.id)
            try Task.checkCancellation()
            if decision["approved"]?.boolValue != true {
                let reason: JSON = decision["reason"] ?? .null
                try await append(NewEvent(.toolDenied, ["toolCallId": .string(call.id), "reason": reason]))
                return appended
            }
        }
        do {
            let output = try await tool.run(call.input, call.id)
            try await append(NewEvent(.toolOutput, ["toolCallId": .string(call.id), "output": output]))
        } catch let failure as ToolFailure {
            try await append(
                NewEvent(.toolError, ["toolCallId": .string(call.id), "errorText": .string(failure.message)]))
        }
        return appended
    }

    /// Subscribes to the approvals channel first, then reads the stored decision, then waits: a decision made at
    /// any moment is seen. A re-read every few seconds covers an announcement lost to a reconnect.
    private func waitForDecision(_ id: String, toolCallID: String) async throws -> JSON {
        waiting.add(1)
        defer { waiting.add(-1) }
        let subscription = try await store.redis.subscriber.subscribe(
            store.keys.approvalsChannel(id), bufferingPolicy: .bufferingNewest(16))
        defer { subscription.cancel() }
        if let decision = try await store.decision(id, toolCallID: toolCallID) { return decision }
        return try await withThrowingTaskGroup(of: JSON?.self) { group in
            group.addTask {
                for await message in subscription where message.string == toolCallID {
                    if let decision = try? await store.decision(id, toolCallID: toolCallID) { return decision }
                }
                return nil
            }
            group.addTask {
                while true {
                    try await Task.sleep(for: .seconds(5))
                    // A failed read (Redis restarting) is simply tried again at the next round.
                    if let decision = try? await store.decision(id, toolCallID: toolCallID) { return decision }
                }
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let result { return result }
            }
            throw CancellationError()
        }
    }

}

extension AgentRunner.Rebuilt {
    /// Folds one event of the log into the state.
    mutating func apply(_ type: String, _ data: JSON) {
        let callID = data["toolCallId"]?.stringValue
        let index = calls.lastIndex { $0.id == callID }
        switch type {
        case EventType.text.rawValue:
            partialText += data["text"]?.stringValue ?? ""
        case EventType.toolCall.rawValue:
            calls.append(
                .init(id: callID ?? "", name: data["toolName"]?.stringValue ?? "", input: data["input"] ?? .null))
            partialText = ""
        case EventType.approvalRequest.rawValue:
            if let index { calls[index].approvalRequested = true }
        case EventType.toolOutput.rawValue:
            if let index { calls[index].result = .output(data["output"] ?? .null) }
        case EventType.toolError.rawValue:
            if let index { calls[index].result = .error(data["errorText"]?.stringValue ?? "") }
        case EventType.toolDenied.rawValue:
            if let index { calls[index].result = .denied(data["reason"]?.stringValue) }
        case EventType.finish.rawValue:
            finished = true
        default:
            break
        }
    }
}

/// How many executions wait for a human decision right now.
public final class WaitGauge: Sendable {
    private let count = Mutex(0)

    /// Makes a gauge at zero.
    public init() {}

    /// The current count.
    public var value: Int { count.withLock { $0 } }

    func add(_ delta: Int) { count.withLock { $0 += delta } }
}
