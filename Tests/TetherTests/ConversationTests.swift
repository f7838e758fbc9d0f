import Foundation
import TestSupport
import Testing
import TetherClient
import TetherCore

@Suite("Conversations", .timeLimit(.minutes(2)))
struct ConversationTests {
    func post(_ harness: Harness, _ body: JSON, token: String? = nil) async throws -> HTTPStream {
        try await harness.http.open(
            .POST, "/run/api/executions", headers: harness.auth(token) + [("Content-Type", "application/json")],
            body: Array(body.rendered.utf8))
    }

    func history(_ harness: Harness, tenant: String = "acme", _ conversation: String) async throws -> [JSON] {
        try await harness.store.history(tenant: tenant, conversationID: conversation, count: 1000)
    }

    @Test func aConversationContinuedAcrossThreeExecutions() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        fake.enqueue(.stream(try fixture("openai-text.sse")))
        fake.enqueue(.stream(Array(ProviderTests.oneCall(name: "get_weather", arguments: #"{"city":"Oslo"}"#).utf8)))
        fake.enqueue(.stream(try fixture("openai-text.sse")))
        fake.enqueue(.stream(try fixture("openai-text.sse")))
        let harness = try await Harness.start { config in
            var model = AgentDefinition.Model(provider: .openai, name: "gpt-4.1-mini")
            model.baseURL = fake.baseURL + "/v1"
            config.agents = [AgentDefinition(id: "bot", model: model, system: "Be brief.", tools: ["get_weather"])]
        }
        defer { harness.stop() }
        let token = try await harness.makeKey(tenant: "acme", agent: "bot")
        let reply = "Paris is 18°C and sunny — enjoy your café! 🌤"

        // 1. A new conversation starts from all of the request's messages.
        let first = try await post(
            harness,
            [
                "conversationId": "trip-1",
                "messages": [
                    ["role": "system", "content": "The user is in Paris."], ["role": "user", "content": "Hi"],
                ],
            ], token: token)
        #expect(try await readFrames(first) { _ in false }.last?.finishReason == "stop")
        // The exchange is in the history as soon as the final frame is out.
        #expect(try await history(harness, "trip-1").map { $0["type"] } == ["system", "user", "assistant"])

        // 2. An existing conversation: its history, then the request's last user message (earlier ones ignored).
        let second = try await post(
            harness,
            [
                "conversationId": "trip-1",
                "messages": [
                    ["role": "user", "content": "ignored"], ["role": "user", "content": "Weather in Oslo?"],
                ],
            ], token: token)
        #expect(try await readFrames(second) { _ in false }.last?.finishReason == "stop")
        let secondRequests = fake.received.dropFirst()
        #expect(
            secondRequests.first?.body["messages"]
                == [
                    ["role": "system", "content": "Be brief."], ["role": "system", "content": "The user is in Paris."],
                    ["role": "user", "content": "Hi"], ["role": "assistant", "content": .string(reply)],
                    ["role": "user", "content": "Weather in Oslo?"],
                ])

        // 3. The third sees both earlier executions, tool call and result included.
        let third = try await post(
            harness, ["conversationId": "trip-1", "messages": [["role": "user", "content": "Thanks!"]]], token: token)
        #expect(try await readFrames(third) { _ in false }.last?.finishReason == "stop")
        let messages = try #require(fake.received.last?.body["messages"]?.arrayValue)
        #expect(
            messages.map { $0["role"]?.stringValue ?? "" } == [
                "system", "system", "user", "assistant", "user", "assistant", "tool", "assistant", "user",
            ])
        #expect(messages[5]["tool_calls"]?.arrayValue?.first?["function"]?["arguments"] == #"{"city":"Oslo"}"#)
        #expect(messages[6]["tool_call_id"] == "call_T1")
        #expect(messages.last?["content"] == "Thanks!")
        #expect(try await history(harness, "trip-1").count == 9)
    }

    @Test func aSecondExecutionOnABusyConversationIs409NamingTheRunningOne() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let body: JSON = ["conversationId": "c-busy", "messages": [["role": "user", "content": "email a@b.co"]]]
        let first = try await post(harness, body)
        _ = try await readFrames(first) { $0.contains { $0.type == "tool-approval-request" } }
        let second = try await harness.http.send(
            .POST, "/run/api/executions", headers: harness.auth() + [("Content-Type", "application/json")],
            body: Array(body.rendered.utf8))
        #expect(second.status == 409)
        let error = try JSON.parse(second.body)
        #expect(error["code"] == "conversation_busy")
        #expect(error["error"]?.stringValue?.contains(first.executionID) == true)
        // Another tenant's conversation of the same name is another conversation.
        let other = try await harness.makeKey(tenant: "globex", agent: "demo")
        let theirs = try await post(
            harness, ["conversationId": "c-busy", "messages": [["role": "user", "content": "hi"]]], token: other)
        #expect(theirs.status == 200)
        #expect(try await readFrames(theirs) { _ in false }.last?.finishReason == "stop")
        #expect(try await history(harness, tenant: "globex", "c-busy").count == 2)
        // Once the first ends (cancelled here), the conversation is free again.
        #expect(
            try await harness.http.send(
                .POST, "/run/api/executions/\(first.executionID)/cancel", headers: harness.auth()
            ).status == 200)
        let third = try await post(
            harness, ["conversationId": "c-busy", "messages": [["role": "user", "content": "hi"]]])
        #expect(third.status == 200)
        #expect(try await readFrames(third) { _ in false }.last?.finishReason == "stop")
    }

    @Test func theHistoryIsBoundedAndAStaleHolderIsFreed() async throws {
        let harness = try await Harness.start { $0.conversations.maxMessages = 3 }
        defer { harness.stop() }
        for text in ["one", "two", "three"] {
            let stream = try await post(
                harness, ["conversationId": "short", "messages": [["role": "user", "content": .string(text)]]])
            #expect(try await readFrames(stream) { _ in false }.last?.finishReason == "stop")
        }
        let items = try await history(harness, "short")
        #expect(items.count == 3)
        #expect(items.last?["type"] == "assistant")
        #expect(items[1]["content"] == "three")
        // A holder that is gone (its execution expired) does not keep the conversation busy.
        try await harness.redis.send(
            "HSET", harness.store.keys.conversationState(tenant: "acme", conversationID: "short"), "running",
            "exec_long_gone")
        let after = try await post(
            harness, ["conversationId": "short", "messages": [["role": "user", "content": "four"]]])
        #expect(after.status == 200)
        #expect(try await readFrames(after) { _ in false }.last?.finishReason == "stop")
    }
}
