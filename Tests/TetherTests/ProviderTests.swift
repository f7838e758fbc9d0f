import Foundation
import TestSupport
import Testing
import TetherClient
import TetherCore

@testable import TetherWorker

/// The environment variable the test agents read their API key from, and its value.
let providerKeyVariable = "TETHER_TEST_PROVIDER_KEY"
let providerKey = "sk-test-0123456789abcdef"

/// A captured provider stream or error body (Tests/TetherTests/Fixtures/providers, see its README).
func fixture(_ name: String) throws -> [UInt8] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/providers/\(name)")
    return Array(try Data(contentsOf: url))
}

/// The `name: value` lines of a captured headers file, without the framing ones the fake sends itself.
func fixtureHeaders(_ name: String) throws -> [(String, String)] {
    String(decoding: try fixture(name), as: UTF8.self).split(separator: "\n").compactMap { line in
        guard let colon = line.firstIndex(of: ":") else { return nil }
        let name = String(line[..<colon])
        guard name != "content-length", name != "date" else { return nil }
        return (name, line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
    }
}

/// The byte offsets just after each occurrence of `needle` plus `shift` (to cut a body inside a JSON string, or in
/// the middle of a UTF-8 sequence).
func offsets(of needle: String, in body: [UInt8], shift: Int = 0) -> [Int] {
    let pattern = Array(needle.utf8)
    var found: [Int] = []
    var index = 0
    while index + pattern.count <= body.count {
        if Array(body[index..<index + pattern.count]) == pattern { found.append(index + shift) }
        index += 1
    }
    return found
}

@Suite("Model providers against fake servers", .serialized, .timeLimit(.minutes(2)))
struct ProviderTests {
    /// A harness whose agent `bot` talks to `fake` with `provider`.
    func harness(
        _ fake: FakeProvider, _ provider: AgentDefinition.Provider, tools: [String] = ["get_weather", "send_email"]
    ) async throws -> (Harness, String) {
        let harness = try await Harness.start(tokenDelayMilliseconds: 0) { config in
            var model = AgentDefinition.Model(
                provider: provider, name: provider == .openai ? "gpt-4.1-mini" : "claude-sonnet-4-5")
            model.baseURL = fake.baseURL + (provider == .openai ? "/v1" : "")
            model.apiKeyEnvironment = providerKeyVariable
            model.timeoutSeconds = 20
            config.agents = [AgentDefinition(id: "bot", model: model, system: "Be brief.", tools: tools), .demo]
        }
        return (harness, try await harness.makeKey(tenant: "acme", agent: "bot"))
    }

    @Test func openAITextCutInsideJSONAndInsideUTF8() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        let body = try fixture("openai-text.sse")
        // Cuts inside the JSON of every content delta, and inside each multi-byte character.
        let cuts =
            offsets(of: "\"content\":\"", in: body, shift: 14) + offsets(of: "°", in: body, shift: 1)
            + offsets(of: "é", in: body, shift: 1) + offsets(of: "🌤", in: body, shift: 2)
            + offsets(of: "—", in: body, shift: 1)
        fake.enqueue(.stream(body, cutAt: cuts))
        let (harness, token) = try await harness(fake, .openai)
        defer { harness.stop() }
        let stream = try await harness.create("Weather in Paris?", token: token)
        let frames = try await readFrames(stream) { _ in false }
        #expect(replyText(frames) == "Paris is 18°C and sunny — enjoy your café! 🌤")
        #expect(frames.last?.finishReason == "stop")
        let finished = try #require(frames.first { $0.typed?["data"]?["type"]?.stringValue == "turn-finished" })
        #expect(finished.typed?["data"]?["usage"]?["inputTokens"]?.numberValue == 14)
        #expect(finished.typed?["data"]?["usage"]?["outputTokens"]?.numberValue == 13)
        // The request, as the API wants it.
        let request = try #require(fake.received.first)
        #expect(request.path == "/v1/chat/completions")
        #expect(request.headers["authorization"] == "Bearer \(providerKey)")
        #expect(request.body["model"] == "gpt-4.1-mini")
        #expect(request.body["stream"] == true)
        #expect(request.body["stream_options"]?["include_usage"] == true)
        #expect(
            request.body["messages"]
                == [["role": "system", "content": "Be brief."], ["role": "user", "content": "Weather in Paris?"]])
        #expect(request.body["tools"]?.arrayValue?.map { $0["function"]?["name"] } == ["get_weather", "send_email"])
        #expect(request.body["tools"]?.arrayValue?.first?["function"]?["parameters"]?["required"] == ["city"])
    }

    @Test func openAIParallelToolCallsAndTheNextRequestCarriesBothResults() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        let tools = try fixture("openai-tools.sse")
        fake.enqueue(.stream(tools, cutAt: offsets(of: "arguments\":\"", in: tools, shift: 13)))
        fake.enqueue(.stream(try fixture("openai-text.sse")))
        let (harness, token) = try await harness(fake, .openai)
        defer { harness.stop() }
        let stream = try await harness.create("Weather, then mail Bob", token: token)
        let frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        // The calls as a client assembles them: by index, arguments sent once, in fragments.
        let calls = toolCalls(frames)
        #expect(
            calls.map { $0["id"]?.stringValue } == ["call_Hk3nVq8ZpL2mWc7RtY4sBx1D", "call_9fGs2LwQeT6bNz1XyKc4Ju8P"])
        #expect(calls[0]["function"]?["arguments"]?.stringValue == #"{"city":"Paris"}"#)
        #expect(
            calls[1]["function"]?["arguments"]?.stringValue
                == #"{"to":"bob@example.com","subject":"Hi","body":"Hello"}"#)
        // get_weather needs no approval and ran; send_email waits.
        let approval = try #require(frames.last?.typed)
        #expect(approval["toolCallId"]?.stringValue == "call_9fGs2LwQeT6bNz1XyKc4Ju8P")
        let status = try JSON.parse(try await harness.status(stream.executionID, token: token).body)
        #expect(status["status"]?.stringValue == "suspended")
        #expect(
            try await harness.decide(
                stream.executionID, "call_9fGs2LwQeT6bNz1XyKc4Ju8P", approved: false, reason: "Not today", token: token
            ).status == 200)
        let rest = try await readFrames(stream) { _ in false }
        #expect(rest.last?.finishReason == "stop")
        // The second request carries the assistant's calls and both results, in OpenAI's format.
        let second = try #require(fake.received.dropFirst().first)
        let messages = try #require(second.body["messages"]?.arrayValue)
        #expect(messages.count == 5)
        #expect(messages[2]["role"] == "assistant")
        #expect(messages[2]["content"] == .null)
        #expect(
            messages[2]["tool_calls"]?.arrayValue?.map { $0["function"]?["arguments"] } == [
                #"{"city":"Paris"}"#, #"{"to":"bob@example.com","subject":"Hi","body":"Hello"}"#,
            ])
        #expect(messages[3]["role"] == "tool")
        #expect(messages[3]["tool_call_id"] == "call_Hk3nVq8ZpL2mWc7RtY4sBx1D")
        #expect(try JSON.parse(Array((messages[3]["content"]?.stringValue ?? "").utf8))["forecast"] == "sunny")
        #expect(messages[4]["tool_call_id"] == "call_9fGs2LwQeT6bNz1XyKc4Ju8P")
        #expect(messages[4]["content"]?.stringValue?.contains("Not today") == true)
    }

    @Test func anthropicToolUseAndToolResultsOnTheNextTurn() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        let tools = try fixture("anthropic-tools.sse")
        fake.enqueue(.stream(tools, cutAt: offsets(of: "partial_json\":\"", in: tools, shift: 17)))
        fake.enqueue(
            .stream(
                try fixture("anthropic-text.sse"),
                cutAt: offsets(of: "°", in: try fixture("anthropic-text.sse"), shift: 1)))
        let (harness, token) = try await harness(fake, .anthropic)
        defer { harness.stop() }
        let stream = try await harness.create("Weather, then mail Bob", token: token)
        let frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        #expect(replyText(frames) == "I'll check the weather in Paris and send Bob an email.")
        let calls = toolCalls(frames)
        #expect(
            calls.map { $0["function"]?["arguments"]?.stringValue } == [
                #"{"city":"Paris"}"#, #"{"to":"bob@example.com","subject":"Hi","body":"Hello"}"#,
            ])
        #expect(
            try await harness.decide(stream.executionID, "toolu_01GfJ6sYb9QeNt4WkXa1MrU3", approved: true, token: token)
                .status == 200)
        let rest = try await readFrames(stream) { _ in false }
        #expect(replyText(rest) == "Bonjour! Paris is 18°C and sunny today — perfect café weather.")
        #expect(rest.last?.finishReason == "stop")
        let first = try #require(fake.received.first)
        #expect(first.path == "/v1/messages")
        #expect(first.headers["x-api-key"] == providerKey)
        #expect(first.headers["anthropic-version"] == "2023-06-01")
        #expect(first.body["system"] == "Be brief.")
        #expect(first.body["max_tokens"] == 1024)
        #expect(first.body["tools"]?.arrayValue?.first?["input_schema"]?["required"] == ["city"])
        let second = try #require(fake.received.dropFirst().first)
        let messages = try #require(second.body["messages"]?.arrayValue)
        #expect(messages.count == 3)
        let assistant = try #require(messages[1]["content"]?.arrayValue)
        #expect(assistant.map { $0["type"] } == ["text", "tool_use", "tool_use"])
        #expect(assistant[2]["input"] == ["to": "bob@example.com", "subject": "Hi", "body": "Hello"])
        #expect(messages[2]["role"] == "user")
        let results = try #require(messages[2]["content"]?.arrayValue)
        #expect(
            results.map { $0["tool_use_id"] } == ["toolu_01Pq8RwT3nKdVx5LmZc2HyB7", "toolu_01GfJ6sYb9QeNt4WkXa1MrU3"])
        #expect(results.allSatisfy { $0["type"] == "tool_result" && $0["is_error"] == nil })
    }

    @Test func anOverloadedErrorInTheMiddleOfATurnAbortsItAndTheTurnIsRedone() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        fake.enqueue(.stream(try fixture("anthropic-overloaded.sse"), dropAfter: true))
        fake.enqueue(.stream(try fixture("anthropic-text.sse")))
        let (harness, token) = try await harness(fake, .anthropic)
        defer { harness.stop() }
        let stream = try await harness.create("Forecast?", token: token)
        let frames = try await readFrames(stream) { _ in false }
        let aborted = try #require(frames.first { $0.typed?["data"]?["type"]?.stringValue == "turn-aborted" })
        #expect(aborted.typed?["data"]?["reason"]?.stringValue?.contains("Overloaded") == true)
        // The partial text of the aborted turn is void; the redone turn is the reply.
        #expect(replyText(frames) == "Bonjour! Paris is 18°C and sunny today — perfect café weather.")
        #expect(frames.last?.finishReason == "stop")
        #expect(fake.received.count == 2)
    }

    @Test func aConnectionDroppedInTheMiddleOfAStreamAbortsTheTurnAndItIsRedone() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        let body = try fixture("openai-text.sse")
        let half = offsets(of: " sunny", in: body)[0]
        fake.enqueue(.stream(Array(body[..<half]), dropAfter: true))
        fake.enqueue(.stream(body))
        let (harness, token) = try await harness(fake, .openai)
        defer { harness.stop() }
        let stream = try await harness.create("Weather?", token: token)
        let frames = try await readFrames(stream) { _ in false }
        #expect(frames.contains { $0.typed?["data"]?["type"]?.stringValue == "turn-aborted" })
        #expect(replyText(frames) == "Paris is 18°C and sunny — enjoy your café! 🌤")
        #expect(frames.last?.finishReason == "stop")
    }

    @Test func aRateLimitIsRetriedAfterItsRetryAfter() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        fake.enqueue(
            .error(
                .tooManyRequests, String(decoding: try fixture("openai-error-429.json"), as: UTF8.self),
                headers: try fixtureHeaders("openai-error-429.headers").filter { $0.0 != "content-type" }))
        fake.enqueue(.stream(try fixture("openai-text.sse")))
        let (harness, token) = try await harness(fake, .openai)
        defer { harness.stop() }
        let start = ContinuousClock.now
        let stream = try await harness.create("Weather?", token: token)
        let frames = try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        #expect(replyText(frames) == "Paris is 18°C and sunny — enjoy your café! 🌤")
        // No output had streamed: a plain retry, no aborted turn.
        #expect(!frames.contains { $0.typed?["data"]?["type"]?.stringValue == "turn-aborted" })
        #expect(fake.received.count == 2)
        #expect(ContinuousClock.now - start >= .milliseconds(900), "Retry-After: 1 was honoured")
    }

    @Test func aBadRequestFailsTheExecutionWithTheProvidersMessageAndNoKey() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        // The provider echoes the key in its message (some do, for an invalid key): it must not reach the client.
        let body =
            #"{"error":{"message":"Invalid value for 'model' with key \#(providerKey).","type":"invalid_request_error","param":"model","code":null}}"#
        fake.enqueue(.error(.badRequest, body))
        let (harness, token) = try await harness(fake, .openai)
        defer { harness.stop() }
        let stream = try await harness.create("Weather?", token: token)
        let frames = try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "error")
        let error = try #require(frames.first { $0.typed?["data"]?["code"] != nil }?.typed?["data"])
        #expect(error["code"] == "model_error")
        let message = error["message"]?.stringValue ?? ""
        #expect(message.contains("400"))
        #expect(message.contains("Invalid value for 'model'"))
        #expect(!message.contains(providerKey))
        #expect(!frames.contains { $0.event.data.contains(providerKey) })
        #expect(fake.received.count == 1, "a 400 is not retried")
        let status = try JSON.parse(try await harness.status(stream.executionID, token: token).body)
        #expect(status["error"]?["code"] == "model_error")
    }

    @Test func argumentsThatBreakTheSchemaGoBackToTheModelAsAToolError() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        // The weather call with a number for a city.
        fake.enqueue(.stream(Array(Self.oneCall(name: "get_weather", arguments: #"{"city":7}"#).utf8)))
        fake.enqueue(.stream(try fixture("openai-text.sse")))
        let (harness, token) = try await harness(fake, .openai)
        defer { harness.stop() }
        let stream = try await harness.create("Weather?", token: token)
        let frames = try await readFrames(stream) { _ in false }
        let error = try #require(frames.first { $0.type == "tool-output-error" }?.typed)
        #expect(error["errorText"]?.stringValue?.contains("input.city: must be string") == true)
        #expect(!frames.contains { $0.type == "tool-output-available" })
        let second = try #require(fake.received.dropFirst().first)
        let toolMessage = second.body["messages"]?.arrayValue?.last
        #expect(toolMessage?["role"] == "tool")
        #expect(toolMessage?["content"]?.stringValue?.hasPrefix("Error:") == true)
    }

    /// A Chat Completions stream of one tool call, in the captured chunks' shape.
    static func oneCall(name: String, arguments: String) -> String {
        calls([(id: "call_T1", name: name, arguments: arguments)])
    }

    /// A Chat Completions stream of tool calls, in the captured chunks' shape: each call's first chunk, then each
    /// call's arguments in one fragment.
    static func calls(_ calls: [(id: String, name: String, arguments: String)]) -> String {
        let head =
            #"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1783846012,"model":"gpt-4.1-mini","choices":[{"index":0,"delta":"#
        let tail = #","logprobs":null,"finish_reason":null}],"usage":null}"#
        var body = ""
        for (index, call) in calls.enumerated() {
            let start =
                #"{"tool_calls":[{"index":"# + String(index) + #","id":""# + call.id
                + #"","type":"function","function":{"name":""# + call.name + #"","arguments":""}}]}"#
            body += "data: \(head)\(start)\(tail)\n\n"
        }
        for (index, call) in calls.enumerated() {
            let fragment =
                #"{"tool_calls":[{"index":"# + String(index) + #","function":{"arguments":"#
                + JSON.quoted(call.arguments) + "}}]}"
            body += "data: \(head)\(fragment)\(tail)\n\n"
        }
        let finish =
            #"{"id":"chatcmpl-T1","object":"chat.completion.chunk","created":1783846012,"model":"gpt-4.1-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}"#
        return body + "data: \(finish)\n\ndata: [DONE]\n\n"
    }

    @Test func twoCallsInOneTurnOneApprovedOneDeniedAndTheNextRequestCarriesBoth() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        let email = #"{"to":"%@","subject":"Hi","body":"Hello"}"#
        fake.enqueue(
            .stream(
                Array(
                    Self.calls([
                        (
                            id: "call_A", name: "send_email",
                            arguments: email.replacingOccurrences(of: "%@", with: "a@x.io")
                        ),
                        (
                            id: "call_B", name: "send_email",
                            arguments: email.replacingOccurrences(of: "%@", with: "b@x.io")
                        ),
                    ]).utf8)),
            .stream(try fixture("openai-text.sse")))
        let (harness, token) = try await harness(fake, .openai)
        defer { harness.stop() }
        let stream = try await harness.create("Mail both", token: token)
        // Both requests come in one append, before the execution waits.
        let frames = try await readFrames(stream) { $0.filter { $0.type == "tool-approval-request" }.count == 2 }
        let status = try JSON.parse(try await harness.status(stream.executionID, token: token).body)
        #expect(
            status["pendingApprovals"]?.arrayValue?.compactMap { $0["toolCallId"]?.stringValue } == [
                "call_A", "call_B",
            ])
        // It waits for a human from when it parked, until nothing is undecided: one decision of two keeps its time.
        let id = stream.executionID
        let waiting = harness.store.keys.waiting(for: id)
        #expect(try await eventually(5) { try await harness.redis.send("ZSCORE", waiting, id).string != nil })
        let since = try await harness.redis.send("ZSCORE", waiting, id).string
        #expect(
            try await harness.decide(stream.executionID, "call_B", approved: false, reason: "Not B", token: token)
                .status == 200)
        #expect(
            try await eventually(5) {
                try await harness.redis.send("HGET", harness.store.keys.meta(id), "parked").string != nil
            })
        #expect(try await harness.redis.send("ZSCORE", waiting, id).string == since)
        #expect(try await harness.decide(stream.executionID, "call_A", approved: true, token: token).status == 200)
        #expect(try await harness.redis.send("ZSCORE", waiting, id).string == nil)
        let rest = try await readFrames(stream) { _ in false }
        #expect(rest.last?.finishReason == "stop")
        #expect(
            (frames + rest).filter { $0.type == "tool-output-available" }.compactMap { $0.typed?["toolCallId"] } == [
                "call_A"
            ])
        #expect(
            (frames + rest).filter { $0.type == "tool-output-denied" }.compactMap { $0.typed?["toolCallId"] } == [
                "call_B"
            ])
        let messages = try #require(fake.received.last?.body["messages"]?.arrayValue)
        let tools = messages.filter { $0["role"] == "tool" }
        #expect(tools.map { $0["tool_call_id"] } == ["call_A", "call_B"])
        #expect(try JSON.parse(Array((tools[0]["content"]?.stringValue ?? "").utf8))["to"] == "a@x.io")
        #expect(tools[1]["content"]?.stringValue?.contains("Not B") == true)
    }
}

@Suite("Decisions made while the runner is busy", .timeLimit(.minutes(1)))
struct DecisionRaceTests {
    @Test func aDecisionRecordedWhileAToolRunsIsSeenWhenTheRunnerWaits() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        fake.enqueue(.stream(try fixture("openai-tools.sse")), .stream(try fixture("openai-text.sse")))
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        var model = AgentDefinition.Model(provider: .openai, name: "gpt-4.1-mini")
        model.baseURL = fake.baseURL + "/v1"
        let agent = AgentDefinition(id: "bot", model: model, tools: ["get_weather", "send_email"])
        let store = harness.store
        // get_weather returns only once the human's decision on send_email is stored: the decide script appends it
        // between the runner's approval request and its tool output.
        let slowWeather = BuiltInTool(DemoTools.getWeather.descriptor) { _, context in
            while (try? await store.decision(context.executionID, toolCallID: "call_9fGs2LwQeT6bNz1XyKc4Ju8P")) == nil {
                try? await Task.sleep(for: .milliseconds(20))
            }
            return .output(["forecast": "rain"])
        }
        let runner = AgentRunner(
            store: store, agents: [agent], providers: ["bot": OpenAIProvider(model: model, apiKey: nil)],
            tools: ToolCatalog(fixed: ["get_weather": slowWeather, "send_email": DemoTools.sendEmail]),
            logger: Harness.quietLogger("tether.worker"))
        let token = try await harness.makeKey(tenant: "acme", agent: "bot")
        let stream = try await harness.create("Weather, then mail Bob", token: token)
        let claim = try #require(try await store.claim(stream.executionID, owner: "test"))
        let running = Task { try await runner.run(stream.executionID, fence: claim.fence, jobEntryID: "0-1") }
        _ = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        #expect(
            try await harness.decide(stream.executionID, "call_9fGs2LwQeT6bNz1XyKc4Ju8P", approved: true, token: token)
                .status == 200)
        let rest = try await readFrames(stream) { _ in false }
        #expect(rest.last?.finishReason == "stop")
        try await running.value
    }
}
