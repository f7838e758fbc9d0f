import TetherCore

/// An execution's agent state, rebuilt from its event log alone: the model turns, the tool calls each made, and
/// what became of them. ``apply(_:_:)`` folds one event in; the runner applies both the log it reads and the events
/// it appends, so the state is always what the log says.
struct AgentState: Equatable {
    /// A human's (or the deadline's) decision on a call.
    struct Decision: Equatable {
        var approved: Bool
        var reason: String?
    }

    /// One tool call of a turn.
    struct Call: Equatable {
        var id: String
        var name: String
        var arguments = ""
        var input: JSON?
        var inputError: String?
        var approvalRequested = false
        /// When an unanswered approval request is denied by the system (milliseconds since the epoch).
        var approvalDeadline: Int64?
        var decision: Decision?
        /// How many times a worker started it (`tool-started`); more than 1 after a crash mid-call.
        var starts = 0
        var result: ToolResult?
    }

    enum Phase: Equatable {
        /// Started: its output is streaming, or it was cut short (then it must be aborted before it is redone).
        case open
        /// Ended with ``Turn/finishReason``.
        case finished
        /// Cut short and void; the reason.
        case aborted(String)
    }

    /// One model turn.
    struct Turn: Equatable {
        var id: String
        var text = ""
        var calls: [Call] = []
        var phase = Phase.open
        var finishReason: String?
    }

    var turns: [Turn] = []
    /// The log has its final event.
    var finished = false

    /// Turns that ended (the steps counted against `maxSteps`).
    var finishedTurns: Int { turns.count { $0.phase == .finished } }

    /// Aborted turns at the end of the log, one after the other (a turn that keeps failing is not retried forever).
    var trailingAborts: [String] {
        var reasons: [String] = []
        for turn in turns.reversed() {
            guard case .aborted(let reason) = turn.phase else { break }
            reasons.append(reason)
        }
        return reasons
    }

    /// Folds one event of the log into the state.
    mutating func apply(_ type: String, _ data: JSON) {
        let callID = data["toolCallId"]?.stringValue ?? ""
        switch type {
        case EventType.turnStarted.rawValue:
            turns.append(Turn(id: data["turnId"]?.stringValue ?? ""))
        case EventType.text.rawValue:
            if turns.last?.phase != .open { turns.append(Turn(id: data["turnId"]?.stringValue ?? "")) }
            turns[turns.count - 1].text += data["text"]?.stringValue ?? ""
        case EventType.toolCallStart.rawValue:
            if turns.last?.phase != .open { turns.append(Turn(id: data["turnId"]?.stringValue ?? "")) }
            turns[turns.count - 1].calls.append(Call(id: callID, name: data["toolName"]?.stringValue ?? ""))
        case EventType.toolCallDelta.rawValue:
            updateCall(callID) { $0.arguments += data["argumentsDelta"]?.stringValue ?? "" }
        case EventType.turnFinished.rawValue:
            guard !turns.isEmpty else { return }
            var turn = turns[turns.count - 1]
            turn.phase = .finished
            turn.finishReason = data["finishReason"]?.stringValue
            // The complete calls, as the runner parsed them when the turn ended.
            for entry in data["toolCalls"]?.arrayValue ?? [] {
                let id = entry["toolCallId"]?.stringValue ?? ""
                if !turn.calls.contains(where: { $0.id == id }) {
                    turn.calls.append(Call(id: id, name: entry["toolName"]?.stringValue ?? ""))
                }
                if let index = turn.calls.firstIndex(where: { $0.id == id }) {
                    turn.calls[index].input = entry["input"]
                    turn.calls[index].inputError = entry["inputError"]?.stringValue
                }
            }
            turns[turns.count - 1] = turn
        case EventType.turnAborted.rawValue:
            guard !turns.isEmpty else { return }
            turns[turns.count - 1].phase = .aborted(data["reason"]?.stringValue ?? "interrupted")
        case EventType.toolCall.rawValue:
            // A version 1 log: the turn's text, then one whole call, which ends the turn.
            if turns.last?.phase != .open { turns.append(Turn(id: "")) }
            var call = Call(id: callID, name: data["toolName"]?.stringValue ?? "")
            call.input = data["input"] ?? .object([:])
            call.arguments = call.input?.rendered ?? "{}"
            turns[turns.count - 1].calls.append(call)
            turns[turns.count - 1].phase = .finished
            turns[turns.count - 1].finishReason = "tool_calls"
        case EventType.approvalRequest.rawValue:
            updateCall(callID) {
                $0.approvalRequested = true
                $0.approvalDeadline = data["expiresAt"]?.stringValue.flatMap(Identifiers.milliseconds(isoTimestamp:))
            }
        case EventType.approvalResponse.rawValue:
            updateCall(callID) {
                $0.decision = Decision(
                    approved: data["approved"]?.boolValue == true, reason: data["reason"]?.stringValue)
            }
        case EventType.toolStarted.rawValue:
            updateCall(callID) { $0.starts += 1 }
        case EventType.toolOutput.rawValue:
            updateCall(callID) { $0.result = .output(data["output"] ?? .null) }
        case EventType.toolError.rawValue:
            updateCall(callID) { $0.result = .error(data["errorText"]?.stringValue ?? "") }
        case EventType.toolDenied.rawValue:
            updateCall(callID) { $0.result = .denied(data["reason"]?.stringValue) }
        case EventType.finish.rawValue:
            finished = true
        default:
            break
        }
    }

    /// Folds in the output a recorder stored for the open turn `turnID` (its text deltas and tool-call fragments,
    /// all at once): the same state as applying each of those entries.
    mutating func recordOutput(turnID: String, text: String, calls: [(id: String, name: String, arguments: String)]) {
        guard let last = turns.indices.last, turns[last].id == turnID, turns[last].phase == .open else { return }
        turns[last].text += text
        for call in calls {
            turns[last].calls.append(Call(id: call.id, name: call.name, arguments: call.arguments))
        }
    }

    private mutating func updateCall(_ id: String, _ change: (inout Call) -> Void) {
        for t in turns.indices.reversed() {
            if let c = turns[t].calls.lastIndex(where: { $0.id == id }) {
                change(&turns[t].calls[c])
                return
            }
        }
    }

    /// The items of a request's messages.
    static func items(of messages: JSON) -> [ConversationItem] {
        (messages.arrayValue ?? []).map { message in
            let content = message["content"] ?? .string("")
            switch message["role"]?.stringValue {
            case "system": return .system(Self.text(of: content))
            case "assistant": return .assistant(text: Self.text(of: content), toolCalls: [])
            case "user": return .user(content)
            default: return .user(.string(Self.text(of: content)))
            }
        }
    }

    /// The request's last user message, as an item (what a request on an existing conversation adds to it).
    static func lastUserItem(of messages: JSON) -> [ConversationItem] {
        guard let last = (messages.arrayValue ?? []).last(where: { $0["role"]?.stringValue == "user" }) else {
            return []
        }
        return [.user(last["content"] ?? .string(""))]
    }

    /// Every turn that ended, with its calls and their results (aborted turns are void).
    var turnItems: [ConversationItem] {
        var items: [ConversationItem] = []
        for turn in turns where turn.phase == .finished {
            items.append(
                .assistant(
                    text: turn.text,
                    toolCalls: turn.calls.map {
                        ToolCallRecord(id: $0.id, name: $0.name, arguments: $0.arguments, input: $0.input)
                    }))
            for call in turn.calls {
                items.append(
                    .toolResult(
                        toolCallId: call.id, toolName: call.name, result: call.result ?? .error("no result")))
            }
        }
        return items
    }

    /// The conversation a model continues: the request's messages, then every turn that ended.
    func conversation(messages: JSON) -> [ConversationItem] {
        Self.items(of: messages) + turnItems
    }

    /// The text of a message's content: the string, or its text parts joined.
    static func text(of content: JSON) -> String {
        if let text = content.stringValue { return text }
        return (content.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
    }
}
