import TetherCore

/// The state as JSON, for the checkpoint a worker stores with the appends that end a step (see docs/redis.md): a
/// run resumed from it and the entries after it has the state a run folding the whole log would have.
extension AgentState {
    /// Bumped when the encoding changes; a checkpoint of another version is ignored (the log is folded instead).
    static let checkpointVersion = 1

    /// The state, every field of it.
    var checkpoint: JSON {
        [
            "version": .number(Double(Self.checkpointVersion)), "finished": .bool(finished),
            "turns": .array(turns.map(\.checkpoint)),
        ]
    }

    /// The state a ``checkpoint`` holds, or `nil` for one of another version or shape.
    init?(checkpoint json: JSON) {
        guard json["version"]?.numberValue == Double(Self.checkpointVersion),
            let turns = json["turns"]?.arrayValue
        else { return nil }
        var state = AgentState()
        for entry in turns {
            guard let turn = Turn(checkpoint: entry) else { return nil }
            state.turns.append(turn)
        }
        state.finished = json["finished"]?.boolValue ?? false
        self = state
    }
}

extension AgentState.Turn {
    fileprivate var checkpoint: JSON {
        var json: [String: JSON] = ["id": .string(id), "text": .string(text), "calls": .array(calls.map(\.checkpoint))]
        switch phase {
        case .open: json["phase"] = "open"
        case .finished: json["phase"] = "finished"
        case .aborted(let reason):
            json["phase"] = "aborted"
            json["abortReason"] = .string(reason)
        }
        json["finishReason"] = finishReason.map { .string($0) } ?? .null
        return .object(json)
    }

    fileprivate init?(checkpoint json: JSON) {
        guard let id = json["id"]?.stringValue, let calls = json["calls"]?.arrayValue else { return nil }
        self.init(id: id)
        text = json["text"]?.stringValue ?? ""
        switch json["phase"]?.stringValue {
        case "open": phase = .open
        case "finished": phase = .finished
        case "aborted": phase = .aborted(json["abortReason"]?.stringValue ?? "")
        default: return nil
        }
        finishReason = json["finishReason"]?.stringValue
        for entry in calls {
            guard let call = AgentState.Call(checkpoint: entry) else { return nil }
            self.calls.append(call)
        }
    }
}

extension AgentState.Call {
    fileprivate var checkpoint: JSON {
        var json: [String: JSON] = [
            "id": .string(id), "name": .string(name), "arguments": .string(arguments),
            "approvalRequested": .bool(approvalRequested), "starts": .number(Double(starts)),
        ]
        if let input { json["input"] = input }
        if let inputError { json["inputError"] = .string(inputError) }
        if let approvalDeadline { json["approvalDeadline"] = .number(Double(approvalDeadline)) }
        if let decision {
            json["decision"] = [
                "approved": .bool(decision.approved), "reason": decision.reason.map { .string($0) } ?? .null,
            ]
        }
        switch result {
        case nil: break
        case .output(let output): json["result"] = ["kind": "output", "output": output]
        case .error(let message): json["result"] = ["kind": "error", "message": .string(message)]
        case .denied(let reason): json["result"] = ["kind": "denied", "reason": reason.map { .string($0) } ?? .null]
        }
        return .object(json)
    }

    fileprivate init?(checkpoint json: JSON) {
        guard let id = json["id"]?.stringValue, let name = json["name"]?.stringValue else { return nil }
        self.init(id: id, name: name, arguments: json["arguments"]?.stringValue ?? "")
        input = json["input"]
        inputError = json["inputError"]?.stringValue
        approvalRequested = json["approvalRequested"]?.boolValue ?? false
        approvalDeadline = json["approvalDeadline"]?.numberValue.map { Int64($0) }
        if let decision = json["decision"] {
            self.decision = AgentState.Decision(
                approved: decision["approved"]?.boolValue ?? false, reason: decision["reason"]?.stringValue)
        }
        starts = Int(json["starts"]?.numberValue ?? 0)
        if let result = json["result"] {
            switch result["kind"]?.stringValue {
            case "output": self.result = .output(result["output"] ?? .null)
            case "error": self.result = .error(result["message"]?.stringValue ?? "")
            case "denied": self.result = .denied(result["reason"]?.stringValue)
            default: return nil
            }
        }
    }
}
