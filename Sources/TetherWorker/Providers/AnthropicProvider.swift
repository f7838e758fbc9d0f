import AsyncHTTPClient
import NIOCore
import TetherCore

/// Anthropic's Messages API, streamed: `system` at the top level, `tool_use` content blocks whose input streams as
/// `input_json_delta` fragments, `tool_result` blocks on the next turn, usage and stop reason in `message_delta`,
/// and `event: error` (overloaded, say) possibly in the middle of a stream.
public struct AnthropicProvider: ModelProvider {
    /// The API version sent as `anthropic-version`.
    public static let apiVersion = "2023-06-01"
    /// `max_tokens` when the agent sets none (the API requires one).
    public static let defaultMaxTokens = 1024

    let model: AgentDefinition.Model
    let http: ProviderHTTP
    let apiKey: String

    /// Makes the provider; `apiKey` comes from the agent's `apiKeyEnv`.
    public init(model: AgentDefinition.Model, apiKey: String, client: HTTPClient = .shared) {
        self.model = model
        self.apiKey = apiKey
        self.http = ProviderHTTP(client: client, apiKey: apiKey, timeout: model.timeoutSeconds)
    }

    /// Streams one turn from `POST {baseURL}/v1/messages`.
    public func streamTurn(_ request: ModelRequest, into sink: any TurnSink) async throws {
        var headers: [(String, String)] = model.headers.sorted { $0.key < $1.key }
        headers += [("x-api-key", apiKey), ("anthropic-version", Self.apiVersion)]
        var parser = AnthropicStreamParser()
        try await http.streamTurn(
            url: model.resolvedBaseURL + "/v1/messages", headers: headers, body: Self.body(request, model),
            errorMessage: { $0["error"]?["message"]?.stringValue }, into: sink,
            parse: { event in try parser.parse(event, http: http) })
        if !parser.stopped { throw http.streamError("the stream ended before message_stop", retryable: true) }
    }

    /// The request body.
    static func body(_ request: ModelRequest, _ model: AgentDefinition.Model) -> JSON {
        var system: [String] = request.system.map { [$0] } ?? []
        var messages: [JSON] = []
        /// Tool results go together in the user message that follows the assistant's calls.
        var results: [JSON] = []
        func flushResults() {
            if !results.isEmpty { messages.append(["role": "user", "content": .array(results)]) }
            results = []
        }
        for item in request.items {
            if case .toolResult = item {} else { flushResults() }
            switch item {
            case .system(let text):
                system.append(text)
            case .user(let content):
                messages.append(["role": "user", "content": Self.userContent(content)])
            case .assistant(let text, let calls):
                var blocks: [JSON] = []
                if !text.isEmpty { blocks.append(["type": "text", "text": .string(text)]) }
                for call in calls {
                    blocks.append([
                        "type": "tool_use", "id": .string(call.id), "name": .string(call.name),
                        "input": call.input ?? .object([:]),
                    ])
                }
                if blocks.isEmpty { blocks.append(["type": "text", "text": "(no reply)"]) }
                messages.append(["role": "assistant", "content": .array(blocks)])
            case .toolResult(let id, _, let result):
                var block: [String: JSON] = [
                    "type": "tool_result", "tool_use_id": .string(id),
                    "content": .string(OpenAIProvider.text(of: result)),
                ]
                if case .output = result {} else { block["is_error"] = true }
                results.append(.object(block))
            }
        }
        flushResults()
        var body: [String: JSON] = [
            "model": .string(model.name), "messages": .array(messages), "stream": true,
            "max_tokens": .number(Double(model.maxOutputTokens ?? defaultMaxTokens)),
        ]
        if !system.isEmpty { body["system"] = .string(system.joined(separator: "\n\n")) }
        if !request.tools.isEmpty {
            body["tools"] = .array(
                request.tools.map { tool in
                    [
                        "name": .string(tool.name), "description": .string(tool.description),
                        "input_schema": tool.inputSchema,
                    ]
                })
        }
        if let temperature = model.temperature { body["temperature"] = .number(temperature) }
        return .object(body)
    }

    /// A user message's content in Anthropic's blocks: text as it is, `image_url` parts as URL image sources.
    static func userContent(_ content: JSON) -> JSON {
        guard let parts = content.arrayValue else { return content }
        return .array(
            parts.map { part in
                if part["type"]?.stringValue == "image_url" {
                    return [
                        "type": "image",
                        "source": ["type": "url", "url": part["image_url"]?["url"] ?? .string("")],
                    ]
                }
                return ["type": "text", "text": part["text"] ?? .string("")]
            })
    }
}

/// Turns the events of a Messages stream into ``ModelEvent``s.
struct AnthropicStreamParser {
    /// The tool-use blocks open, by content block index.
    private var toolBlocks: [Int: String] = [:]
    private var inputTokens: Int?
    /// `message_stop` was seen.
    private(set) var stopped = false

    mutating func parse(_ event: SSEEvent, http: ProviderHTTP) throws -> [ModelEvent] {
        guard let data = try? JSON.parse(Array(event.data.utf8)) else { return [] }
        switch event.event ?? data["type"]?.stringValue {
        case "message_start":
            inputTokens = data["message"]?["usage"]?["input_tokens"]?.numberValue.map { Int($0) }
            return []
        case "content_block_start":
            let block = data["content_block"] ?? .null
            guard block["type"]?.stringValue == "tool_use", let id = block["id"]?.stringValue else { return [] }
            toolBlocks[Int(data["index"]?.numberValue ?? -1)] = id
            return [.toolCallStart(id: id, name: block["name"]?.stringValue ?? "")]
        case "content_block_delta":
            let delta = data["delta"] ?? .null
            switch delta["type"]?.stringValue {
            case "text_delta":
                guard let text = delta["text"]?.stringValue, !text.isEmpty else { return [] }
                return [.textDelta(text)]
            case "input_json_delta":
                guard let id = toolBlocks[Int(data["index"]?.numberValue ?? -1)],
                    let fragment = delta["partial_json"]?.stringValue, !fragment.isEmpty
                else { return [] }
                return [.toolCallDelta(id: id, arguments: fragment)]
            default:
                return []
            }
        case "content_block_stop":
            guard let id = toolBlocks.removeValue(forKey: Int(data["index"]?.numberValue ?? -1)) else { return [] }
            return [.toolCallEnd(id: id)]
        case "message_delta":
            var events: [ModelEvent] = [
                .usage(input: inputTokens, output: data["usage"]?["output_tokens"]?.numberValue.map { Int($0) })
            ]
            if let reason = data["delta"]?["stop_reason"]?.stringValue {
                events.append(.finish(reason: Self.finish(reason)))
            }
            return events
        case "message_stop":
            stopped = true
            return []
        case "error":
            let type = data["error"]?["type"]?.stringValue
            let retryable = type == "overloaded_error" || type == "api_error" || type == "rate_limit_error"
            throw http.streamError(data["error"]?["message"]?.stringValue, retryable: retryable)
        default:
            return []
        }
    }

    /// Anthropic's stop reasons in OpenAI's words.
    static func finish(_ reason: String) -> String {
        switch reason {
        case "end_turn", "stop_sequence": "stop"
        case "tool_use": "tool_calls"
        case "max_tokens": "length"
        default: reason
        }
    }
}
