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

    /// `{"id":"<exec>","object":"chat.completion.chunk","created":` — the same for every frame of the execution.
    private let head: String
    /// `,"model":"<agent>","choices":[{"index":0,"delta":`
    private let middle: String

    /// Makes a renderer for one execution.
    public init(executionID: String, model: String) {
        self.executionID = executionID
        self.model = model
        head = "{\"id\":" + JSON.quoted(executionID) + ",\"object\":\"chat.completion.chunk\",\"created\":"
        middle = ",\"model\":" + JSON.quoted(model) + ",\"choices\":[{\"index\":0,\"delta\":"
    }

    /// Appends one frame: `id: <entry id>`, `data: <chunk>`, blank line.
    public func appendFrame(_ event: StoredEvent, to buffer: inout ByteBuffer) {
        buffer.writeString("id: ")
        buffer.writeString(event.id)
        buffer.writeString("\ndata: ")
        let (delta, finishReason) = parts(event)
        buffer.writeString(head)
        buffer.writeString(String(event.timestamp / 1000))
        buffer.writeString(middle)
        buffer.writeString(delta)
        buffer.writeString(",\"finish_reason\":")
        buffer.writeString(finishReason)
        buffer.writeString("}]}\n\n")
    }

    /// The `chat.completion.chunk` JSON of one event.
    public func chunk(_ event: StoredEvent) -> String {
        let (delta, finishReason) = parts(event)
        return head + String(event.timestamp / 1000) + middle + delta + ",\"finish_reason\":" + finishReason + "}]}"
    }

    /// The `delta` object and the `finish_reason` of one event's chunk.
    private func parts(_ event: StoredEvent) -> (delta: String, finishReason: String) {
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
        case EventType.toolCallStart.rawValue:
            delta =
                "{\"tool_calls\":[{\"index\":" + String(JSON.rawMember("index", in: event.data) ?? "0") + ",\"id\":"
                + String(JSON.rawMember("toolCallId", in: event.data) ?? "\"\"")
                + ",\"type\":\"function\",\"function\":{\"name\":"
                + String(JSON.rawMember("toolName", in: event.data) ?? "\"\"") + ",\"arguments\":\"\"}}]}"
        case EventType.toolCallDelta.rawValue:
            delta =
                "{\"tool_calls\":[{\"index\":" + String(JSON.rawMember("index", in: event.data) ?? "0")
                + ",\"function\":{\"arguments\":" + String(JSON.rawMember("argumentsDelta", in: event.data) ?? "\"\"")
                + "}}]}"
        case EventType.started.rawValue, EventType.error.rawValue, EventType.turnStarted.rawValue,
            EventType.turnAborted.rawValue, EventType.toolStarted.rawValue:
            delta = "{\"content\":" + JSON.quoted("{\"type\":\"data-operation\",\"data\":" + event.data + "}") + "}"
        case EventType.turnFinished.rawValue:
            // The finish reason and usage; not the calls' inputs, which the argument fragments already carried.
            var data = "{\"type\":\"turn-finished\""
            for member in ["turnId", "finishReason", "usage"] {
                if let value = JSON.rawMember(member, in: event.data) { data += ",\"\(member)\":" + value }
            }
            delta = "{\"content\":" + JSON.quoted("{\"type\":\"data-operation\",\"data\":" + data + "}}") + "}"
        case EventType.finish.rawValue:
            delta = "{}"
            finishReason = JSON.rawMember("status", in: event.data) == "\"completed\"" ? "\"stop\"" : "\"error\""
        default:
            // Inkeep's typed events (tool-approval-request, tool-output-available...) travel as a JSON string.
            delta = "{\"content\":" + JSON.quoted(event.data) + "}"
        }
        return (delta, finishReason)
    }

    /// Appends a gap frame (no `id:`: it is not a durable event): the events after what the client had and before
    /// `resumeFrom` were trimmed away before the client read them; the stream continues with `resumeFrom`. `after`
    /// is the client's `Last-Event-ID`, or `null` with `startIndex` when it gave `x-stream-start-index`.
    func appendGapFrame(_ gap: Gap, to buffer: inout ByteBuffer) {
        var data: [String: JSON] = ["type": "gap"]
        switch gap.after {
        case .id(let id): data["after"] = .string(id.description)
        case .startIndex(let index):
            data["after"] = .null
            data["startIndex"] = .number(Double(index))
        }
        data["resumeFrom"] = gap.resumeFrom.map { .string($0.description) } ?? .null
        let content = "{\"type\":\"data-operation\",\"data\":" + JSON.object(data).rendered + "}"
        buffer.writeString(
            "data: {\"id\":" + JSON.quoted(executionID) + ",\"object\":\"chat.completion.chunk\",\"created\":"
                + String(Identifiers.nowMilliseconds() / 1000) + ",\"model\":" + JSON.quoted(model)
                + ",\"choices\":[{\"index\":0,\"delta\":{\"content\":" + JSON.quoted(content)
                + "},\"finish_reason\":null}]}\n\n")
    }
}
