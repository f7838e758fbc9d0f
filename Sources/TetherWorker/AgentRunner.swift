import Logging
import Metrics
import RedisKit
import Synchronization
import TetherCore

/// Runs one execution's agent loop for the worker holding its lease, from wherever the log says it stands.
///
/// Each round folds the log into an ``AgentState``, asks ``AgentStep/next(_:maxSteps:tools:)`` what to do, and does
/// it: streams a model turn, runs tools, asks for approvals, parks the execution to wait for decisions, or finishes. What it appends it
/// folds back into the state, so a worker that takes over (after a crash or a lost lease) rebuilds the same state
/// from the log and takes the same next step. A turn cut short is voided (`turn-aborted`) and redone; a tool whose
/// result is logged never runs again.
public struct AgentRunner: Sendable {
    /// The store.
    public let store: ExecutionStore
    /// The agents by id.
    public let agents: [String: AgentDefinition]
    /// The model provider of each agent, by agent id.
    public let providers: [String: any ModelProvider]
    /// Every tool an agent may name.
    public let catalog: ToolCatalog
    /// Most items a conversation's history keeps.
    public let conversationMaxMessages: Int
    let logger: Logger

    /// Whether an error is not the agent's to handle: a lost lease or an execution that ended
    /// (``AppendError``), Redis trouble (the worker retries, rebuilding the state from the log), cancellation.
    static func passesThrough(_ error: any Error) -> Bool {
        error is AppendError || error is RedisError || error is CancellationError
    }

    /// Retries of a model request that failed before any output (429, 5xx, a dropped connection).
    static let maxRequestRetries = 3

    /// Makes a runner.
    public init(
        store: ExecutionStore, agents: [AgentDefinition], providers: [String: any ModelProvider],
        tools: ToolCatalog = ToolCatalog(fixed: DemoTools.all), conversationMaxMessages: Int = 200, logger: Logger
    ) {
        self.conversationMaxMessages = conversationMaxMessages
        self.store = store
        self.agents = Dictionary(agents.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        self.providers = providers
        self.catalog = tools
        self.logger = logger
    }

    /// Runs the execution to its end (or until the lease is lost: ``AppendError/fenced``), or until it waits for a
    /// human decision: then its job (`jobEntryID`, of the jobs stream) is parked and the run returns. It also stops
    /// when it is cancelled: a `cancel` on its control channel stops the run at once (an in-flight model request is
    /// aborted) and it returns normally, the cancel script having written the final events.
    public func run(_ executionID: String, fence: Int, jobEntryID: String) async throws {
        guard let record = try await store.record(executionID) else { return }
        if record.status.isTerminal { return }
        let control = try await store.redis.pubSub.subscribe(
            store.keys.control(executionID), kind: store.keys.channelKind, bufferingPolicy: .bufferingNewest(1))
        defer { control.cancel() }
        struct Cancelled: Error {}
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await message in control where message.string == "cancel" { throw Cancelled() }
                    // The subscription ended without a cancel: this task was cancelled (the worker is stopping).
                    throw CancellationError()
                }
                group.addTask { try await self.drive(record, fence: fence, jobEntryID: jobEntryID) }
                defer { group.cancelAll() }
                try await group.next()
            }
        } catch is Cancelled {
            logger(for: record).info("execution \(executionID) was cancelled; stopped")
        }
    }

    /// The worker's logger with the execution's id, tenant and agent as metadata (in every line of `LOG_FORMAT=json`).
    func logger(for record: ExecutionRecord) -> Logger {
        var logger = self.logger
        logger[metadataKey: "executionId"] = .string(record.id)
        logger[metadataKey: "tenant"] = .string(record.tenant)
        logger[metadataKey: "agent"] = .string(record.agentId)
        return logger
    }

    /// The agent loop of one execution.
    private func drive(_ record: ExecutionRecord, fence: Int, jobEntryID: String) async throws {
        let executionID = record.id
        let run = ExecutionRun(store: store, executionID: executionID, fence: fence, logger: logger(for: record))
        guard let agent = agents[record.agentId], let provider = providers[record.agentId] else {
            run.logger.error("execution \(executionID): agent \(record.agentId) is not configured on this worker")
            try await run.fail(
                code: "agent_not_configured", message: "The agent \(record.agentId) is not configured on this worker.")
            return
        }
        let input = try await store.input(executionID) ?? .null
        let messages = input["messages"] ?? input
        // A new conversation starts from all of the request's messages; an existing one from its history and the
        // request's last user message. The history is read as it was when the execution was created.
        let added = record.conversationNew ? AgentState.items(of: messages) : AgentState.lastUserItem(of: messages)
        let history =
            record.conversationNew
            ? []
            : try await store.history(
                tenant: record.tenant, conversationID: record.conversationId, count: record.historyLength
            ).compactMap(ConversationItem.init(json:))
        let conversation = Conversation(record: record, prefix: history + added, added: added)
        try await run.load()
        var historyAppended = false
        do {
            while true {
                // Redis calls that do not wait do not notice cancellation: check at every step, so that a worker
                // that is stopping hands the execution back at the next step instead of racing on to its end.
                try Task.checkCancellation()
                // The tools as they are now (an MCP server's list can change between steps).
                let tools = await catalog.tools(for: agent)
                let descriptors = tools.mapValues(\.descriptor)
                switch AgentStep.next(run.state, maxSteps: agent.maxSteps, tools: descriptors) {
                case .done:
                    // Ended (failed, cancelled, or completed by an owner that stopped before): free the
                    // conversation. A completion here freed it with its history already.
                    if !historyAppended {
                        _ = try? await store.releaseConversation(
                            tenant: record.tenant, conversationID: record.conversationId, executionID: executionID)
                    }
                    return
                case .complete:
                    // The exchange joins the conversation's history before the final frame: a client that has the
                    // final frame and starts the next execution finds it there.
                    try await store.appendHistory(
                        tenant: record.tenant, conversationID: record.conversationId, executionID: executionID,
                        items: (conversation.added + run.state.turnItems).map(\.json),
                        maxMessages: conversationMaxMessages)
                    historyAppended = true
                    try await run.append([NewEvent(.finish, ["status": "completed"], status: .completed)])
                case .fail(let code, let message):
                    try await run.fail(code: code, message: message)
                case .abortTurn(let turnID):
                    try await run.append([
                        NewEvent(.turnAborted, ["turnId": .string(turnID), "reason": "the turn was interrupted"])
                    ])
                case .callModel:
                    try await runTurn(
                        run, agent: agent, provider: provider, conversation: conversation.prefix,
                        tools: descriptors.values.sorted { $0.name < $1.name })
                case .reject(let rejections):
                    for rejection in rejections {
                        // The model may name a tool that does not exist: not a label value (unbounded).
                        let name = run.call(rejection.toolCallID)?.name ?? ""
                        TetherMetrics.toolCalls(descriptors[name] == nil ? "unknown" : name, "rejected").increment()
                    }
                    try await run.append(
                        rejections.map {
                            NewEvent(
                                .toolError, ["toolCallId": .string($0.toolCallID), "errorText": .string($0.errorText)])
                        })
                case .requestApprovals(let ids):
                    try await run.append(approvalRequests(ids, run.state, timeout: agent.approvalTimeoutSeconds))
                case .recordDenials(let ids):
                    for id in ids { TetherMetrics.toolCalls(run.call(id)?.name ?? "unknown", "denied").increment() }
                    try await run.append(
                        ids.map { id in
                            let reason = run.call(id)?.decision?.reason
                            return NewEvent(
                                .toolDenied, ["toolCallId": .string(id), "reason": reason.map { .string($0) } ?? .null])
                        })
                case .runTools(let ids):
                    try await runTools(ids, run, tools: tools)
                case .waitForDecisions(let ids):
                    if try await park(ids, run, jobEntryID: jobEntryID) { return }
                }
            }
        } catch let error where Self.passesThrough(error) {
            throw error
        } catch {
            // The client gets a stable code and a message for humans; the error itself (Swift types, paths,
            // provider replies) goes only to the log, under the execution's id.
            run.logger.error("execution \(executionID) failed: \(String(reflecting: error))")
            try await run.fail(
                code: "agent_error",
                message: "The agent stopped on an internal error. The worker's log has the details under this "
                    + "execution's id.")
            _ = try? await store.releaseConversation(
                tenant: record.tenant, conversationID: record.conversationId, executionID: executionID)
        }
    }

    /// What an execution contributes to its conversation, and what its model sees before its own turns.
    struct Conversation {
        let record: ExecutionRecord
        /// The history, then the request's items.
        let prefix: [ConversationItem]
        /// The request's items (all its messages for a new conversation, else its last user message).
        let added: [ConversationItem]
    }

    // MARK: - Model turns

    /// Streams one model turn into the log: `turn-started`, its output, `turn-finished`. A request that fails before
    /// any output is retried with backoff (honouring `Retry-After`); a turn that fails after output is voided
    /// (`turn-aborted`) and left for the next round to redo, a bounded number of times.
    private func runTurn(
        _ run: ExecutionRun, agent: AgentDefinition, provider: any ModelProvider, conversation: [ConversationItem],
        tools: [ToolDescriptor]
    ) async throws {
        let turnID = "turn_" + Identifiers.token(16)
        try await run.append([
            NewEvent(.turnStarted, ["turnId": .string(turnID), "step": .number(Double(run.state.turns.count + 1))])
        ])
        let request = ModelRequest(
            executionID: run.executionID, model: agent.model, system: agent.system,
            items: conversation + run.state.turnItems,
            tools: tools)
        var attempt = 0
        while true {
            let recorder = TurnRecorder(
                store: store, executionID: run.executionID, fence: run.fence, turnID: turnID, after: run.ownLast)
            let failure: ModelError
            let providerName = agent.model.provider.rawValue
            let started = ContinuousClock.now
            do {
                try await provider.streamTurn(request, into: recorder)
                TetherMetrics.modelRequest(providerName).record(duration: ContinuousClock.now - started)
                let outcome = try await recorder.finish()
                if let tokens = outcome.inputTokens {
                    TetherMetrics.modelTokens(providerName, "input").increment(by: Int64(tokens))
                }
                if let tokens = outcome.outputTokens {
                    TetherMetrics.modelTokens(providerName, "output").increment(by: Int64(tokens))
                }
                run.fold(outcome, turnID: turnID)
                try await run.append([Self.turnFinished(turnID, outcome)])
                return
            } catch let error as ModelError {
                failure = error
            } catch let error where Self.passesThrough(error) {
                throw error
            } catch {
                run.logger.error(
                    "execution \(run.executionID): the model provider failed: \(String(reflecting: error))")
                failure = ModelError(code: "model_error", message: "The model provider failed.")
            }
            TetherMetrics.modelErrors(providerName, failure.code).increment()
            // What the recorder stored before the failure is in the log: fold it in (an append failure wins).
            run.fold(try await recorder.finish(), turnID: turnID)
            run.logger.warning("execution \(run.executionID): model request failed: \(failure)")
            if !recorder.producedOutput, failure.retryable, attempt < Self.maxRequestRetries {
                attempt += 1
                try await Task.sleep(for: Self.backoff(attempt: attempt, retryAfter: failure.retryAfter))
                continue
            }
            let aborted = NewEvent(.turnAborted, ["turnId": .string(turnID), "reason": .string(failure.message)])
            if recorder.producedOutput, failure.retryable {
                // Output had streamed: void the turn; the next round asks the model again.
                try await run.append([aborted])
            } else {
                try await run.append([aborted] + ExecutionRun.failure(code: failure.code, message: failure.message))
            }
            return
        }
    }

    /// The pause before retry `attempt` (1, 2, 3…): 0.5 s doubling, with jitter, at most 8 s; at least what
    /// `Retry-After` asked, up to a minute.
    static func backoff(attempt: Int, retryAfter: Duration?) -> Duration {
        let base = min(8.0, 0.5 * Double(1 << min(attempt - 1, 10)))
        let jittered = base * Double.random(in: 0.5...1.0)
        let asked = retryAfter.map { min(60, Double($0.components.seconds)) } ?? 0
        return .milliseconds(Int64(max(jittered, asked) * 1000))
    }

    /// `turn-finished`, with each call's complete input (or why its arguments are not valid JSON).
    static func turnFinished(_ turnID: String, _ outcome: TurnRecorder.Outcome) -> NewEvent {
        let calls: [JSON] = outcome.calls.map { call in
            var entry: [String: JSON] = ["toolCallId": .string(call.id), "toolName": .string(call.name)]
            let text = call.arguments.trimmingCharacters(in: .whitespacesAndNewlines)
            switch Result(catching: { () throws(JSONError) -> JSON in
                try JSON.parse(Array((text.isEmpty ? "{}" : text).utf8))
            }) {
            case .success(let input): entry["input"] = input
            case .failure(let error):
                entry["inputError"] = .string("the arguments are not valid JSON (\(error.reason))")
            }
            return .object(entry)
        }
        var usage: [String: JSON] = [:]
        usage["inputTokens"] = outcome.inputTokens.map { .number(Double($0)) } ?? .null
        usage["outputTokens"] = outcome.outputTokens.map { .number(Double($0)) } ?? .null
        return NewEvent(
            .turnFinished,
            [
                "turnId": .string(turnID),
                "finishReason": .string(outcome.finishReason ?? (outcome.calls.isEmpty ? "stop" : "tool_calls")),
                "usage": .object(usage), "toolCalls": .array(calls),
            ])
    }
}
