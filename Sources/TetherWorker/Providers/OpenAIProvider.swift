import AsyncHTTPClient
import NIOCore
import TetherCore

/// OpenAI's Chat Completions, streamed (`stream: true`, with usage), and any server that speaks it: vLLM, Ollama,
/// llama.cpp's server, LiteLLM…
///
/// Tool calls arrive as deltas by `index`: the first delta of a call carries its id and name, the rest carry
/// argument fragments; several calls may interleave. The stream ends with `data: [DONE]`.
public struct OpenAIProvider: ModelProvider {
    let model: AgentDefinition.Model
    let http: ProviderHTTP
    let apiKey: String?

    /// Makes the provider; `apiKey` comes from the agent's `apiKeyEnv` (none for a local server that needs none).
    public init(model: AgentDefinition.Model, apiKey: String?, client: HTTPClient = .shared) {
        self.model = model
        self.apiKey = apiKey
        self.http = ProviderHTTP(client: client, apiKey: apiKey, timeout: model.timeoutSeconds)
    }

    /// Streams one turn from `POST {baseURL}/chat/completions`.
    public func streamTurn(_ request: ModelRequest, into sink: any TurnSink) async throws {
        var headers: [(String, String)] = model.headers.sorted { $0.key < $1.key }
        if let apiKey { headers.append(("Authorization", "Bearer \(apiKey)")) }
        var parser = OpenAIStreamParser()
        try await http.streamTurn(
            url: model.resolvedBaseURL + "/chat/completions", headers: headers, body: Self.body(request, model),
            errorMessage: { $0["error"]?["message"]?.stringValue }, into: sink,
            parse: { event in try parser.parse(event, http: http) })
        if !parser.done { throw http.streamError("the stream ended before [DONE]", retryable: true) }
    }

    /// The request body.
    static func body(_ request: ModelRequest, _ model: AgentDefinition.Model) -> JSON {
        var messages: [JSON] = []
        if let system = request.system { messages.append(["role": "system", "content": .string(system)]) }
        for item in request.items {
            switch item {
            case .system(let text):
                messages.append(["role": "system", "content": .string(text)])
            case .user(let content):
                messages.append(["role": "user", "content": content])
            case .assistant(let text, let calls):
                var message: [String: JSON] = ["role": "assistant", "content": text.isEmpty ? .null : .string(text)]
                if !calls.isEmpty {
                    message["tool_calls"] = .array(
                        calls.map { call in
                            [
                                "id": .string(call.id), "type": "function",
                                "function": ["name": .string(call.name), "arguments": .string(call.arguments)],
                            ]
                        })
                }
                messages.append(.object(message))
            case .toolResult(let id, _, let result):
                messages.append([
                    "role": "tool", "tool_call_id": .string(id), "content": .string(Self.text(of: result)),
                ])
            }
        }
        var body: [String: JSON] = [
            "model": .string(model.name), "messages": .array(messages), "stream": true,
            "stream_options": ["include_usage": true],
        ]
        if !request.tools.isEmpty {
            body["tools"] = .array(
                request.tools.map { tool in
                    [
                        "type": "function",
                        "function": [
                            "name": .string(tool.name), "description": .string(tool.description),
                            "parameters": tool.inputSchema,
                        ],
                    ]
                })
        }
        if let temperature = model.temperature { body["temperature"] = .number(temperature) }
        if let maxTokens = model.maxOutputTokens { body["max_tokens"] = .number(Double(maxTokens)) }
        return .object(body)
    }

    /// A tool result as the text a `tool` message carries.
    static func text(of result: ToolResult) -> String {
        switch result {
        case .output(let output): output.stringValue ?? output.rendered
        case .error(let message): "Error: \(message)"
        case .denied(let reason):
            "The user denied this tool call" + (reason.map { ". Reason: \($0)" } ?? " without giving a reason.")
        }
    }
}

/// Turns the chunks of a Chat Completions stream into ``ModelEvent``s.
struct OpenAIStreamParser {
    /// Provider ids of the calls by their index.
    private var calls: [Int: String] = [:]
    private var ended = false
    /// `[DONE]` was seen.
    private(set) var done = false

    mutating func parse(_ event: SSEEvent, http: ProviderHTTP) throws -> [ModelEvent] {
        if event.data == "[DONE]" {
            done = true
            return endCalls()
        }
        guard let chunk = try? JSON.parse(Array(event.data.utf8)) else { return [] }
        if let error = chunk["error"] {
            throw http.streamError(error["message"]?.stringValue, retryable: false)
        }
        var events: [ModelEvent] = []
        for choice in chunk["choices"]?.arrayValue ?? [] {
            let delta = choice["delta"] ?? .null
            if let text = delta["content"]?.stringValue, !text.isEmpty { events.append(.textDelta(text)) }
            for call in delta["tool_calls"]?.arrayValue ?? [] {
                let index = Int(call["index"]?.numberValue ?? Double(calls.count))
                if calls[index] == nil {
                    let id = call["id"]?.stringValue ?? "call_\(index)"
                    calls[index] = id
                    events.append(.toolCallStart(id: id, name: call["function"]?["name"]?.stringValue ?? ""))
                }
                if let fragment = call["function"]?["arguments"]?.stringValue, !fragment.isEmpty, let id = calls[index]
                {
                    events.append(.toolCallDelta(id: id, arguments: fragment))
                }
            }
            if let reason = choice["finish_reason"]?.stringValue {
                events += endCalls()
                events.append(.finish(reason: reason))
            }
        }
        if let usage = chunk["usage"], usage != .null {
            events.append(
                .usage(
                    input: usage["prompt_tokens"]?.numberValue.map { Int($0) },
                    output: usage["completion_tokens"]?.numberValue.map { Int($0) }))
        }
        return events
    }

    private mutating func endCalls() -> [ModelEvent] {
        guard !ended else { return [] }
        ended = true
        return calls.sorted { $0.key < $1.key }.map { .toolCallEnd(id: $0.value) }
    }
}
