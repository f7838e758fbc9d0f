import TetherCore

/// The agent's next step, decided from its state alone (``AgentStep/next(_:maxSteps:tools:)``): a pure function,
/// so that a worker resuming an execution from its log takes exactly the step the previous owner would have.
/// The runner carries steps out (model calls, tool runs, appends) and folds what it appends back into the state.
enum AgentStep: Equatable {
    /// A call the runner refuses without running: its arguments are not valid JSON, break the tool's schema, or name
    /// a tool the agent does not have. The model is told why (`tool-output-error`).
    struct Rejection: Equatable {
        var toolCallID: String
        var errorText: String
    }

    /// Nothing more to do: the log has its final event.
    case done
    /// The last turn was cut short (a crash, a lost lease): void it (`turn-aborted`) before it is redone.
    case abortTurn(turnID: String)
    /// Ask the model for the next turn.
    case callModel
    /// Tell the model these calls cannot run.
    case reject([Rejection])
    /// Ask a human to approve these calls, all in one append.
    case requestApprovals([String])
    /// Record these calls as denied (their decision said no).
    case recordDenials([String])
    /// Run these calls (they need no approval, or were approved), concurrently.
    case runTools([String])
    /// Wait for a human decision on these calls.
    case waitForDecisions([String])
    /// The model is done: the execution completed.
    case complete
    /// The execution cannot go on: fail it with this code and message.
    case fail(code: String, message: String)

    /// Consecutive aborted turns after which the execution fails instead of trying again.
    static let maxTurnAttempts = 3

    /// The step to take in `state`, for an agent allowed `maxSteps` turns and these tools.
    static func next(_ state: AgentState, maxSteps: Int, tools: [String: ToolDescriptor]) -> AgentStep {
        if state.finished { return .done }
        let aborts = state.trailingAborts
        if aborts.count >= maxTurnAttempts {
            return .fail(
                code: "model_error",
                message: "The model failed \(aborts.count) times in a row; the last time: \(aborts[0])")
        }
        guard let turn = state.turns.last else { return .callModel }
        switch turn.phase {
        case .open:
            return .abortTurn(turnID: turn.id)
        case .aborted:
            return .callModel
        case .finished:
            break
        }
        let pending = turn.calls.filter { $0.result == nil }
        if turn.calls.isEmpty { return .complete }
        if pending.isEmpty {
            guard state.finishedTurns < maxSteps else {
                return .fail(
                    code: "max_steps_exceeded",
                    message: "The agent used all of its \(maxSteps) model turns without finishing.")
            }
            return .callModel
        }
        let rejections = pending.compactMap { call -> Rejection? in
            guard let problem = problem(call, tools) else { return nil }
            return Rejection(toolCallID: call.id, errorText: problem)
        }
        if !rejections.isEmpty { return .reject(rejections) }
        let needsApproval = { (call: AgentState.Call) in tools[call.name]?.needsApproval == true }
        let unrequested = pending.filter { needsApproval($0) && !$0.approvalRequested }
        if !unrequested.isEmpty { return .requestApprovals(unrequested.map(\.id)) }
        let denied = pending.filter { $0.decision?.approved == false }
        if !denied.isEmpty { return .recordDenials(denied.map(\.id)) }
        let runnable = pending.filter { !needsApproval($0) || $0.decision?.approved == true }
        if !runnable.isEmpty { return .runTools(runnable.map(\.id)) }
        return .waitForDecisions(pending.map(\.id))
    }

    /// Why `call` cannot run, or `nil` when it can.
    private static func problem(_ call: AgentState.Call, _ tools: [String: ToolDescriptor]) -> String? {
        guard let tool = tools[call.name] else {
            return "There is no tool named \(call.name). The tools are: \(tools.keys.sorted().joined(separator: ", "))."
        }
        if let inputError = call.inputError { return "The arguments of \(call.name) were not accepted: \(inputError)" }
        guard let input = call.input, case .object = input else {
            return "The arguments of \(call.name) must be a JSON object."
        }
        if let problem = JSONSchema.problem(input, against: tool.inputSchema) {
            return "The arguments of \(call.name) do not match its schema: \(problem)"
        }
        return nil
    }
}
