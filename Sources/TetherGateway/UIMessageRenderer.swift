import NIOCore
import TetherCore

/// Renders an execution's log as the Vercel AI SDK UI message stream (`x-vercel-ai-ui-message-stream: v1`): the
/// chunks of AI SDK 6.0.0's `ui-message-chunks.ts`, each with exactly the keys that schema allows, in the order its
/// stream processor accepts (docs/protocol.md, "The UI message stream").
///
/// One log entry becomes none, one or several chunks, depending on what came before it (a part's first text opens
/// it with `text-start`, say), so the renderer folds the log from its first entry: a render of the same log is the
/// same every time, whichever gateway makes it. Each chunk's SSE id is its entry's id with the chunk's index within
/// the entry (`1764425001234-0:1`), and ``index`` counts chunks from the first one (`startIndex`).
public struct UIMessageRenderer: Sendable {
    /// Where the client resumes: chunks up to it are folded but not written.
    public enum Resume: Sendable, Hashable {
        /// Write every chunk.
        case none
        /// Write chunks from this index (`startIndex`).
        case index(Int)
        /// Write the chunks after this entry's chunk `sub` (after all of its chunks when `nil`): `Last-Event-ID`.
        case after(StreamID, sub: Int?)
    }

    /// The execution id: the message id of its `start` chunk.
    public let executionID: String
    /// What the client already has.
    public var resume: Resume
    /// Chunks rendered so far, written or not.
    public private(set) var index = 0

    /// Whether the first entry has been seen (a log whose first entry is not `execution-started` was trimmed).
    private var begun = false
    /// A trimmed log's `start` and `data-gap`, written before its first kept entry's chunks, without ids (they
    /// belong to no entry: which entry is first moves as the log is trimmed).
    private var prefix: [String] = []
    private var stepOpen = false
    /// Text parts opened in the current step, in order.
    private var openText: [String] = []
    /// Tool calls the message holds a part for (`tool-input-start` or `tool-input-available` sent): only those may
    /// get an approval request or an output.
    private var knownTools: Set<String> = []
    /// Tool calls whose input is streaming (`tool-input-start` sent, input not yet available), with the argument
    /// text so far.
    private var streamingTools: [String: String] = [:]
    /// The finish reason of the last finished turn.
    private var lastFinishReason: String?
    private var lastStatus: String?
    /// Parts of version 1 logs, whose text deltas have no part id.
    private var unnamedParts = 0

    /// Makes a renderer that folds an execution's log from its first entry.
    public init(executionID: String, resume: Resume = .none) {
        self.executionID = executionID
        self.resume = resume
    }

    /// Appends the SSE frames of the chunks of `event` that come after ``resume``; `data: [DONE]` after the final
    /// event's.
    public mutating func append(_ event: StoredEvent, to buffer: inout ByteBuffer) {
        let chunks = chunks(event)
        for chunk in prefix {
            defer { index += 1 }
            if case .after(let cursor, _) = resume, let position = event.position, cursor >= position { continue }
            if case .index(let start) = resume, index < start { continue }
            buffer.writeString("data: ")
            buffer.writeString(chunk)
            buffer.writeString("\n\n")
        }
        prefix = []
        for (sub, chunk) in chunks.enumerated() {
            defer { index += 1 }
            guard isWanted(event, sub: sub) else { continue }
            buffer.writeString("id: ")
            buffer.writeString(event.id)
            buffer.writeString(":")
            buffer.writeString(String(sub))
            buffer.writeString("\ndata: ")
            buffer.writeString(chunk)
            buffer.writeString("\n\n")
        }
        if event.isFinal { buffer.writeString("data: [DONE]\n\n") }
    }

    private func isWanted(_ event: StoredEvent, sub: Int) -> Bool {
        switch resume {
        case .none: return true
        case .index(let start): return index >= start
        case .after(let cursor, let cursorSub):
            guard let position = event.position else { return true }
            if position != cursor { return position > cursor }
            return cursorSub.map { sub > $0 } ?? false
        }
    }

    /// The chunks of one event, as JSON texts, and the state they leave.
    public mutating func chunks(_ event: StoredEvent) -> [String] {
        var out: [String] = []
        let data = event.data
        func raw(_ key: String, _ fallback: String = "\"\"") -> String {
            JSON.rawMember(key, in: data).map(String.init) ?? fallback
        }
        if !begun {
            begun = true
            let start = Self.chunk("start", ("messageId", JSON.quoted(executionID)))
            if event.type == EventType.started.rawValue {
                out.append(start)
            } else {
                // The log was trimmed (`streams.maxLength`): say so, then render what is kept.
                prefix = [
                    start,
                    Self.chunk(
                        "data-gap", ("data", "{\"type\":\"gap\",\"resumeFrom\":" + JSON.quoted(event.id) + "}")),
                ]
            }
        }
        switch event.type {
        case EventType.started.rawValue:
            break
        case EventType.turnStarted.rawValue:
            closeStep(into: &out)
            out.append(Self.chunk("start-step"))
            stepOpen = true
        case EventType.text.rawValue:
            openStep(into: &out)
            let partID: String
            if let given = JSON.rawMember("partId", in: data) {
                partID = String(given)
            } else {
                if openText.isEmpty { unnamedParts += 1 }
                partID = JSON.quoted("text-\(unnamedParts)")
            }
            if !openText.contains(partID) {
                openText.append(partID)
                out.append(Self.chunk("text-start", ("id", partID)))
            }
            out.append(Self.chunk("text-delta", ("id", partID), ("delta", raw("text"))))
        case EventType.toolCallStart.rawValue:
            openStep(into: &out)
            let id = raw("toolCallId")
            streamingTools[id] = ""
            knownTools.insert(id)
            out.append(Self.chunk("tool-input-start", ("toolCallId", id), ("toolName", raw("toolName"))))
        case EventType.toolCallDelta.rawValue:
            let id = raw("toolCallId")
            guard let text = streamingTools[id] else { break }
            let fragment = raw("argumentsDelta")
            streamingTools[id] = text + ((try? JSON.parse(fragment))?.stringValue ?? "")
            out.append(Self.chunk("tool-input-delta", ("toolCallId", id), ("inputTextDelta", fragment)))
        case EventType.toolCall.rawValue:
            openStep(into: &out)
            // Text after the call is a part of its own, below the call.
            closeText(into: &out)
            let id = raw("toolCallId")
            knownTools.insert(id)
            out.append(
                Self.chunk(
                    "tool-input-available", ("toolCallId", id), ("toolName", raw("toolName")),
                    ("input", raw("input", "{}"))))
        case EventType.turnFinished.rawValue:
            closeText(into: &out)
            let json = event.json
            lastFinishReason = json["finishReason"]?.stringValue
            for call in json["toolCalls"]?.arrayValue ?? [] {
                guard let id = call["toolCallId"]?.stringValue else { continue }
                let quotedID = JSON.quoted(id)
                let name = JSON.quoted(call["toolName"]?.stringValue ?? "")
                openStep(into: &out)
                if let input = call["input"] {
                    out.append(
                        Self.chunk(
                            "tool-input-available", ("toolCallId", quotedID), ("toolName", name),
                            ("input", input.rendered)))
                } else {
                    let error = call["inputError"]?.stringValue ?? "the arguments are not valid JSON"
                    out.append(
                        Self.chunk(
                            "tool-input-error", ("toolCallId", quotedID), ("toolName", name),
                            ("input", JSON.quoted(streamingTools[quotedID] ?? "")), ("errorText", JSON.quoted(error))))
                }
                knownTools.insert(quotedID)
                streamingTools[quotedID] = nil
            }
        case EventType.turnAborted.rawValue:
            closeText(into: &out)
            closeStreamingTools("the turn was cut short and is redone", into: &out)
            out.append(Self.dataChunk("turn-aborted", id: raw("turnId"), data: data))
            closeStep(into: &out)
        case EventType.approvalRequest.rawValue:
            let id = raw("toolCallId")
            if knownTools.contains(id) {
                out.append(Self.chunk("tool-approval-request", ("approvalId", raw("approvalId")), ("toolCallId", id)))
            } else {
                out.append(Self.dataChunk("tool-approval-request", id: id, data: data))
            }
        case EventType.approvalResponse.rawValue:
            out.append(Self.dataChunk("tool-approval-response", id: raw("toolCallId"), data: data))
        case EventType.toolStarted.rawValue:
            out.append(Self.dataChunk("tool-started", id: raw("toolCallId"), data: data))
        case EventType.toolOutput.rawValue, EventType.toolError.rawValue, EventType.toolDenied.rawValue:
            let id = raw("toolCallId")
            guard knownTools.contains(id) else {
                out.append(Self.dataChunk(event.type, id: id, data: data))
                break
            }
            switch event.type {
            case EventType.toolOutput.rawValue:
                out.append(Self.chunk(event.type, ("toolCallId", id), ("output", raw("output", "null"))))
            case EventType.toolError.rawValue:
                out.append(Self.chunk(event.type, ("toolCallId", id), ("errorText", raw("errorText"))))
            default:
                out.append(Self.chunk(event.type, ("toolCallId", id)))
            }
        case EventType.error.rawValue:
            closeText(into: &out)
            closeStreamingTools("the execution ended first", into: &out)
            // The code first: a client that stops at `error` (useChat does) still has it.
            out.append(Self.dataChunk("error", id: nil, data: data))
            if JSON.rawMember("code", in: data) == "\"cancelled\"" {
                out.append(Self.chunk("abort"))
            } else {
                out.append(Self.chunk("error", ("errorText", raw("message", "\"the execution failed\""))))
            }
        case EventType.finish.rawValue:
            closeStep(into: &out)
            status(event.status ?? (try? JSON.parse(raw("status")))?.stringValue, into: &out)
            let reason: String
            switch JSON.rawMember("status", in: data) {
            case "\"completed\"": reason = Self.finishReason(lastFinishReason)
            case "\"cancelled\"": reason = "other"
            default: reason = "error"
            }
            out.append(Self.chunk("finish", ("finishReason", JSON.quoted(reason))))
            return out
        default:
            // Event types added later: a data part, when the name can be one.
            if event.type.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || $0 == 45 }), !event.type.isEmpty {
                out.append(Self.dataChunk(event.type, id: nil, data: data))
            }
        }
        status(event.status, into: &out)
        return out
    }

    /// A `data-status` part (one per message, updated in place) when the status changed.
    private mutating func status(_ status: String?, into out: inout [String]) {
        guard let status, status != lastStatus else { return }
        lastStatus = status
        out.append(Self.dataChunk("status", id: "\"status\"", data: "{\"status\":" + JSON.quoted(status) + "}"))
    }

    /// Ends the parts of calls whose input was still streaming (it will not come) with `tool-output-error`.
    private mutating func closeStreamingTools(_ reason: String, into out: inout [String]) {
        for id in streamingTools.keys.sorted() {
            out.append(Self.chunk("tool-output-error", ("toolCallId", id), ("errorText", JSON.quoted(reason))))
        }
        streamingTools = [:]
    }

    private mutating func openStep(into out: inout [String]) {
        guard !stepOpen else { return }
        out.append(Self.chunk("start-step"))
        stepOpen = true
    }

    private mutating func closeText(into out: inout [String]) {
        for id in openText { out.append(Self.chunk("text-end", ("id", id))) }
        openText = []
    }

    private mutating func closeStep(into out: inout [String]) {
        closeText(into: &out)
        guard stepOpen else { return }
        out.append(Self.chunk("finish-step"))
        stepOpen = false
    }

    /// A provider's finish reason as the AI SDK spells it.
    static func finishReason(_ reason: String?) -> String {
        switch reason {
        case nil, "stop", "end_turn", "stop_sequence": return "stop"
        case "length", "max_tokens": return "length"
        case "tool_calls", "function_call", "tool_use", "tool-calls": return "tool-calls"
        case "content_filter", "content-filter", "refusal": return "content-filter"
        case "error": return "error"
        default: return "other"
        }
    }

    /// `{"type":"<type>",<key>:<raw value>,…}`; values are JSON texts.
    static func chunk(_ type: String, _ members: (String, String)...) -> String {
        var out = "{\"type\":\"" + type + "\""
        for (key, value) in members {
            out += ",\"" + key + "\":" + value
        }
        return out + "}"
    }

    /// A `data-<name>` chunk: `id` (a JSON string) when the part is updated in place, `data` a JSON text.
    static func dataChunk(_ name: String, id: String?, data: String) -> String {
        var out = "{\"type\":\"data-" + name + "\""
        if let id { out += ",\"id\":" + id }
        return out + ",\"data\":" + data + "}"
    }
}
