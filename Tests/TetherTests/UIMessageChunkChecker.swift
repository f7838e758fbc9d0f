import TetherCore

/// The Vercel AI SDK 6.0.0 UI message stream, as its client checks it: every chunk against `uiMessageChunkSchema`
/// (`packages/ai/src/ui-message-stream/ui-message-chunks.ts` at tag `ai@6.0.0`: a union of `z.strictObject`s, so
/// an extra key fails the chunk, and `.optional()` accepts a missing key but not `null`), and the order
/// `processUIMessageStream` (`packages/ai/src/ui/process-ui-message-stream.ts`) needs: a text delta or end only
/// for an open text part (`finish-step` closes them all), a tool input delta only after its `tool-input-start`, an
/// approval request or a tool output only for a call the message has a part for. `finish` is the last chunk.
struct UIMessageChunkChecker {
    enum Kind {
        case string, bool, unknown, providerMetadata, finishReason
    }

    typealias Schema = (required: [String: Kind], optional: [String: Kind])

    static let finishReasons: Set<String> = ["stop", "length", "content-filter", "tool-calls", "error", "other"]

    static let schemas: [String: Schema] = [
        "text-start": (["id": .string], ["providerMetadata": .providerMetadata]),
        "text-delta": (["id": .string, "delta": .string], ["providerMetadata": .providerMetadata]),
        "text-end": (["id": .string], ["providerMetadata": .providerMetadata]),
        "error": (["errorText": .string], [:]),
        "tool-input-start": (
            ["toolCallId": .string, "toolName": .string],
            ["providerExecuted": .bool, "dynamic": .bool, "title": .string]
        ),
        "tool-input-delta": (["toolCallId": .string, "inputTextDelta": .string], [:]),
        "tool-input-available": (
            ["toolCallId": .string, "toolName": .string, "input": .unknown],
            ["providerExecuted": .bool, "providerMetadata": .providerMetadata, "dynamic": .bool, "title": .string]
        ),
        "tool-input-error": (
            ["toolCallId": .string, "toolName": .string, "input": .unknown, "errorText": .string],
            ["providerExecuted": .bool, "providerMetadata": .providerMetadata, "dynamic": .bool, "title": .string]
        ),
        "tool-approval-request": (["approvalId": .string, "toolCallId": .string], [:]),
        "tool-output-available": (
            ["toolCallId": .string, "output": .unknown],
            ["providerExecuted": .bool, "dynamic": .bool, "preliminary": .bool]
        ),
        "tool-output-error": (
            ["toolCallId": .string, "errorText": .string], ["providerExecuted": .bool, "dynamic": .bool]
        ),
        "tool-output-denied": (["toolCallId": .string], [:]),
        "reasoning-start": (["id": .string], ["providerMetadata": .providerMetadata]),
        "reasoning-delta": (["id": .string, "delta": .string], ["providerMetadata": .providerMetadata]),
        "reasoning-end": (["id": .string], ["providerMetadata": .providerMetadata]),
        "source-url": (
            ["sourceId": .string, "url": .string], ["title": .string, "providerMetadata": .providerMetadata]
        ),
        "source-document": (
            ["sourceId": .string, "mediaType": .string, "title": .string],
            ["filename": .string, "providerMetadata": .providerMetadata]
        ),
        "file": (["url": .string, "mediaType": .string], ["providerMetadata": .providerMetadata]),
        "start-step": ([:], [:]),
        "finish-step": ([:], [:]),
        "start": ([:], ["messageId": .string, "messageMetadata": .unknown]),
        "finish": ([:], ["finishReason": .finishReason, "messageMetadata": .unknown]),
        "abort": ([:], [:]),
        "message-metadata": (["messageMetadata": .unknown], [:]),
    ]
    static let dataSchema: Schema = (["data": .unknown], ["id": .string, "transient": .bool])

    private var activeText: Set<String> = []
    private var activeReasoning: Set<String> = []
    private var partialToolCalls: Set<String> = []
    private var toolParts: Set<String> = []
    private var finished = false
    /// Chunks checked.
    private(set) var count = 0

    /// The problems of one chunk (its JSON text); none when the SDK accepts it here.
    mutating func check(_ text: String) -> [String] {
        count += 1
        guard let chunk = try? JSON.parse(text), case .object(let members) = chunk else {
            return ["not a JSON object: \(text)"]
        }
        var problems: [String] = []
        if finished { problems.append("a chunk after finish: \(text)") }
        guard let type = members["type"]?.stringValue else { return ["no type: \(text)"] }
        guard let schema = type.hasPrefix("data-") ? Self.dataSchema : Self.schemas[type] else {
            return ["\(type) is not a chunk type of AI SDK 6.0.0"]
        }
        for (key, value) in members where key != "type" {
            guard let kind = schema.required[key] ?? schema.optional[key] else {
                problems.append("\(type) has a key its strict schema refuses: \(key)")
                continue
            }
            if !Self.matches(value, kind) {
                problems.append("\(type).\(key) is not a valid \(kind): \(value.rendered)")
            }
        }
        for key in schema.required.keys where members[key] == nil && schema.required[key] != .unknown {
            problems.append("\(type) lacks \(key)")
        }
        if type.hasPrefix("data-") && members["data"] == nil { problems.append("\(type) lacks data") }
        func string(_ key: String) -> String { members[key]?.stringValue ?? "" }
        switch type {
        case "text-start": activeText.insert(string("id"))
        case "text-delta":
            if !activeText.contains(string("id")) { problems.append("text-delta for a text part not open: \(text)") }
        case "text-end":
            if activeText.remove(string("id")) == nil { problems.append("text-end for a text part not open: \(text)") }
        case "reasoning-start": activeReasoning.insert(string("id"))
        case "reasoning-delta", "reasoning-end":
            if !activeReasoning.contains(string("id")) { problems.append("\(type) for a reasoning part not open") }
            if type == "reasoning-end" { activeReasoning.remove(string("id")) }
        case "tool-input-start":
            partialToolCalls.insert(string("toolCallId"))
            toolParts.insert(string("toolCallId"))
        case "tool-input-delta":
            if !partialToolCalls.contains(string("toolCallId")) {
                problems.append("tool-input-delta before its tool-input-start: \(text)")
            }
        case "tool-input-available", "tool-input-error": toolParts.insert(string("toolCallId"))
        case "tool-approval-request", "tool-output-available", "tool-output-error", "tool-output-denied":
            if !toolParts.contains(string("toolCallId")) {
                problems.append("\(type) for a tool call the message has no part for: \(text)")
            }
        case "finish-step":
            activeText = []
            activeReasoning = []
        case "finish": finished = true
        default: break
        }
        return problems
    }

    private static func matches(_ value: JSON, _ kind: Kind) -> Bool {
        switch (kind, value) {
        case (.unknown, _): return true
        case (.string, .string), (.bool, .bool): return true
        case (.finishReason, .string(let reason)): return finishReasons.contains(reason)
        case (.providerMetadata, .object(let providers)):
            return providers.values.allSatisfy { if case .object = $0 { true } else { false } }
        default: return false
        }
    }
}
