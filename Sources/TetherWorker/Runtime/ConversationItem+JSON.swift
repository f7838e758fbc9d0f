import TetherCore

/// Conversation items as a conversation's history keeps them in Redis (one JSON value per list entry, readable with
/// `redis-cli LRANGE`): `{type: system|user, content}`, `{type: assistant, text, toolCalls: [{id, name,
/// arguments}]}`, `{type: tool, toolCallId, toolName, result: {output} | {error} | {denied}}`.
extension ConversationItem {
    /// The item as stored.
    var json: JSON {
        switch self {
        case .system(let text):
            return ["type": "system", "content": .string(text)]
        case .user(let content):
            return ["type": "user", "content": content]
        case .assistant(let text, let calls):
            return [
                "type": "assistant", "text": .string(text),
                "toolCalls": .array(
                    calls.map { ["id": .string($0.id), "name": .string($0.name), "arguments": .string($0.arguments)] }),
            ]
        case .toolResult(let id, let name, let result):
            let stored: JSON
            switch result {
            case .output(let output): stored = ["output": output]
            case .error(let message): stored = ["error": .string(message)]
            case .denied(let reason): stored = ["denied": reason.map { .string($0) } ?? .null]
            }
            return ["type": "tool", "toolCallId": .string(id), "toolName": .string(name), "result": stored]
        }
    }

    /// An item read back from the history; `nil` for an entry that is not one.
    init?(json: JSON) {
        switch json["type"]?.stringValue {
        case "system":
            self = .system(json["content"]?.stringValue ?? "")
        case "user":
            self = .user(json["content"] ?? .string(""))
        case "assistant":
            let calls = (json["toolCalls"]?.arrayValue ?? []).map { call in
                let arguments = call["arguments"]?.stringValue ?? "{}"
                return ToolCallRecord(
                    id: call["id"]?.stringValue ?? "", name: call["name"]?.stringValue ?? "", arguments: arguments,
                    input: try? JSON.parse(arguments))
            }
            self = .assistant(text: json["text"]?.stringValue ?? "", toolCalls: calls)
        case "tool":
            let result = json["result"] ?? .null
            let outcome: ToolResult
            if let output = result["output"] {
                outcome = .output(output)
            } else if let message = result["error"]?.stringValue {
                outcome = .error(message)
            } else {
                outcome = .denied(result["denied"]?.stringValue)
            }
            self = .toolResult(
                toolCallId: json["toolCallId"]?.stringValue ?? "", toolName: json["toolName"]?.stringValue ?? "",
                result: outcome)
        default:
            return nil
        }
    }
}
