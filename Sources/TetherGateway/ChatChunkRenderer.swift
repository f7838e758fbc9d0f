import NIOCore
import TetherCore

/// Renders stored events as SSE frames in the Inkeep-compatible format: OpenAI `chat.completion.chunk` objects,
/// with Inkeep's typed events as a JSON string in `delta.content`.
///
/// A frame depends on the stored event alone (its id, type, payload and timestamp) and on the execution's id and
/// agent, so a replay is byte-identical to the live delivery.
public struct ChatChunkRenderer: Sendable {
    /// The execution id (the chunk's `id`).
    public let executionID: String
    /// The agent id (the chunk's `model`).
    public let model: String

    /// Makes a renderer for one execution.
    public init(executionID: String, model: String) {
        self.executionID = executionID
        self.model = model
    }

    /// Appends one frame: `id: <entry id>`, `data: <chunk>`, blank line.
    public func appendFrame(_ event: StoredEvent, to buffer: inout ByteBuffer) {
        buffer.writeString("id: ")
        buffer.writeString(event.id)
        buffer.writeString("\ndata: ")
        buffer.writeString(chunk(event))
        buffer.writeString("\n\n")
    }

    /// The `chat.completion.chunk` JSON of one event.
    public func chunk(_ event: StoredEvent) -> String {
        var delta = ""
        var finishReason = "null"
        // Values are copied from the stored JSON text as they are (no decode/encode on the hot path), so the
        // frame is still a pure function of the stored event.
        switch event.type {
        case EventType.text.rawValue:
            delta = "{\"content\":" + String(JSON.rawMember("text", in: event.data) ?? "\"\"") + "}"
        case EventType.toolCall.rawValue:
            delta =
                "{\"tool_calls\":[{\"index\":0,\"id\":" + String(JSON.rawMember("toolCallId", in: event.data) ?? "\"\"")
                + ",\"type\":\"function\",\"function\":{\"name\":"
                + String(JSON.rawMember("toolName", in: event.data) ?? "\"\"") + ",\"arguments\":"
                + JSON.quoted(String(JSON.rawMember("input", in: event.data) ?? "{}")) + "}}]}"
        case EventType.started.rawValue, EventType.error.rawValue:
            delta = "{\"content\":" + JSON.quoted("{\"type\":\"data-operation\",\"data\":" + event.data + "}") + "}"
        case EventType.finish.rawValue:
            delta = "{}"
            finishReason = JSON.rawMember("status", in: event.data) == "\"completed\"" ? "\"stop\"" : "\"error\""
        default:
            // Inkeep's typed events (tool-approval-request, tool-output-available...) travel as a JSON string.
            delta = "{\"content\":" + JSON.quoted(event.data) + "}"
        }
        return "{\"id\":" + JSON.quoted(executionID) + ",\"object\":\"chat.completion.chunk\",\"created\":"
            + String(event.timestamp / 1000) + ",\"model\":" + JSON.quoted(model)
            + ",\"choices\":[{\"index\":0,\"delta\":" + delta + ",\"finish_reason\":" + finishReason + "}]}"
    }

    /// Appends a gap frame (no `id:`: it is not a durable event): the events after `after` and before
    /// `resumeFrom` were trimmed away before the client read them; the stream continues with `resumeFrom`.
    public func appendGapFrame(after: String, resumeFrom: String?, to buffer: inout ByteBuffer) {
        var data: [String: JSON] = ["type": "gap", "after": .string(after)]
        data["resumeFrom"] = resumeFrom.map { .string($0) } ?? .null
        let content = "{\"type\":\"data-operation\",\"data\":" + JSON.object(data).rendered + "}"
        buffer.writeString(
            "data: {\"id\":" + JSON.quoted(executionID) + ",\"object\":\"chat.completion.chunk\",\"created\":"
                + String(Identifiers.nowMilliseconds() / 1000) + ",\"model\":" + JSON.quoted(model)
                + ",\"choices\":[{\"index\":0,\"delta\":{\"content\":" + JSON.quoted(content)
                + "},\"finish_reason\":null}]}\n\n")
    }
}
