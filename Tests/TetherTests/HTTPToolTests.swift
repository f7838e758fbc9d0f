import Foundation
import TestSupport
import Testing
import TetherClient
import TetherCore
import TetherWorker

/// HTTP tools against endpoints on loopback that record what they got (``FakeProvider`` serves them), driven by an
/// agent whose model is a fake OpenAI server.
@Suite("HTTP tools", .serialized, .timeLimit(.minutes(2)))
struct HTTPToolTests {
    /// The `tools:` section of a configuration, read as `scripts/run` would read the file (with this environment).
    static func tools(_ yaml: String, environment: [String: String] = [:]) throws -> ToolSources {
        let context = ConfigContext(environment: environment, toolNames: Set(DemoTools.all.keys))
        return try TetherConfig.parse(yaml: yaml, context: context).tools
    }

    static func harness(model: FakeProvider, tools: ToolSources, agentTools: [String]) async throws -> (Harness, String)
    {
        try await Harness.startWithBot(model: model, tools: tools, agentTools: agentTools)
    }

    static func ticketTool(_ url: String, extra: String = "") -> String {
        """
        tools:
          http:
            - name: create_ticket
              description: Opens a support ticket
              inputSchema:
                type: object
                required: [title]
                additionalProperties: false
                properties:
                  title: {type: string}
                  priority: {type: string, enum: [low, high]}
                  tags: {type: array, items: {type: string}}
              url: \(url)
              headers: {Authorization: "Bearer ${TICKETS_TOKEN}", X-Team: support}
              forwardHeaders: [x-user-id, X-Team]
              timeoutSeconds: 5
        \(extra)
        """
    }

    @Test func aCallPostsItsArgumentsWithTheAllowedForwardedHeadersAndTheIdempotencyKey() async throws {
        let model = try await FakeProvider.start()
        defer { model.stop() }
        let endpoint = try await FakeProvider.start()
        defer { endpoint.stop() }
        endpoint.enqueue(.json(#"{"ticketId":"T-42","status":"open"}"#, status: .created))
        let arguments = #"{"title":"Printer on fire","priority":"high","tags":["office"]}"#
        model.enqueue(
            .stream(Array(ProviderTests.oneCall(name: "create_ticket", arguments: arguments).utf8)),
            .stream(try fixture("openai-text.sse")))
        let tools = try Self.tools(
            Self.ticketTool(endpoint.baseURL + "/api/tickets"), environment: ["TICKETS_TOKEN": "tok-123"])
        let (harness, token) = try await Self.harness(model: model, tools: tools, agentTools: ["create_ticket"])
        defer { harness.stop() }
        let stream = try await harness.create(
            body: [
                "messages": [["role": "user", "content": "The printer is on fire"]],
                "forwardedHeaders": ["X-User-Id": "u-7", "x-secret": "do-not-send", "x-team": "forwarded"],
            ], token: token)
        let frames = try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        let request = try #require(endpoint.received.first)
        #expect(endpoint.received.count == 1)
        #expect(request.path == "/api/tickets")
        #expect(request.body == (try JSON.parse(Array(arguments.utf8))))
        #expect(request.headers["idempotency-key"] == "\(stream.executionID):call_T1")
        #expect(request.headers["authorization"] == "Bearer tok-123")
        #expect(request.headers["content-type"] == "application/json")
        // Only the allowed forwarded headers, and the configured ones win over them.
        #expect(request.headers["x-user-id"] == "u-7")
        #expect(request.headers["x-team"] == "support")
        #expect(request.headers["x-secret"] == nil)
        // tool-started went out before the output, and the output reached the model.
        let started = try #require(frames.firstIndex { $0.typed?["data"]?["type"]?.stringValue == "tool-started" })
        let output = try #require(frames.firstIndex { $0.type == "tool-output-available" })
        #expect(started < output)
        #expect(frames[started].typed?["data"]?["attempt"]?.numberValue == 1)
        #expect(frames[output].typed?["output"]?["ticketId"] == "T-42")
        let messages = try #require(model.received.last?.body["messages"]?.arrayValue)
        let result = try #require(messages.first { $0["role"] == "tool" })
        #expect(result["content"]?.stringValue?.contains("T-42") == true)
    }

    @Test func failuresOfTheEndpointGoToTheModelAsToolErrorsNotAFailedExecution() async throws {
        let model = try await FakeProvider.start()
        defer { model.stop() }
        let broken = try await FakeProvider.start()
        defer { broken.stop() }
        broken.enqueue(.json(#"{"error":"database is down"}"#, status: .internalServerError))
        let slow = try await FakeProvider.start()
        defer { slow.stop() }
        var hanging = FakeProvider.Reply.json("")
        hanging.pieces = []
        hanging.hang = true
        slow.enqueue(hanging)
        let chatty = try await FakeProvider.start()
        defer { chatty.stop() }
        chatty.enqueue(.json("<html>Bad gateway</html>"))
        let nowhere = "http://127.0.0.1:\(try freePort())/x"
        func tool(_ name: String, _ url: String) -> String {
            "    - {name: \(name), url: \"\(url)\", timeoutSeconds: 0.5}"
        }
        let tools = try Self.tools(
            "tools:\n  http:\n"
                + [
                    tool("broken", broken.baseURL + "/t"), tool("slow", slow.baseURL + "/t"),
                    tool("chatty", chatty.baseURL + "/t"), tool("nowhere", nowhere),
                ].joined(separator: "\n"))
        let names = ["broken", "slow", "chatty", "nowhere"]
        model.enqueue(
            .stream(
                Array(
                    ProviderTests.calls(names.enumerated().map { (id: "call_\($0)", name: $1, arguments: "{}") }).utf8)),
            .stream(try fixture("openai-text.sse")))
        let (harness, token) = try await Self.harness(model: model, tools: tools, agentTools: names)
        defer { harness.stop() }
        let stream = try await harness.create("Try everything", token: token)
        let frames = try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        var errors: [String: String] = [:]
        for frame in frames where frame.type == "tool-output-error" {
            let id = try #require(frame.typed?["toolCallId"]?.stringValue)
            errors[id] = frame.typed?["errorText"]?.stringValue
        }
        #expect(errors["call_0"] == #"broken answered HTTP 500 Internal Server Error: {"error":"database is down"}"#)
        #expect(errors["call_1"] == "slow did not answer within 0.5 s.")
        #expect(errors["call_2"]?.hasPrefix("chatty answered with a body that is not JSON") == true)
        #expect(errors["call_2"]?.hasSuffix(": <html>Bad gateway</html>") == true)
        #expect(errors["call_3"] == "nowhere could not be reached (connection refused).")
        // Each was tried once, and the model heard of every failure.
        #expect(broken.received.count == 1 && slow.received.count == 1 && chatty.received.count == 1)
        let messages = try #require(model.received.last?.body["messages"]?.arrayValue)
        #expect(messages.filter { $0["role"] == "tool" }.count == 4)
    }

    @Test func argumentsThatBreakTheSchemaGoBackToTheModelAndTheToolDoesNotRun() async throws {
        let model = try await FakeProvider.start()
        defer { model.stop() }
        let endpoint = try await FakeProvider.start()
        defer { endpoint.stop() }
        let bad: [(String, String)] = [
            (#"{"priority":"high"}"#, "input.title: is required"),
            (#"{"title":7}"#, "input.title: must be string, got number"),
            (#"{"title":"x","priority":"urgent"}"#, #"input.priority: must be one of "low", "high""#),
            (#"{"title":"x","tags":["a",3]}"#, "input.tags[1]: must be string, got number"),
            (#"{"title":"x","owner":"me"}"#, "input.owner: is not a known property"),
        ]
        model.enqueue(
            .stream(
                Array(
                    ProviderTests.calls(
                        bad.enumerated().map { (id: "call_\($0)", name: "create_ticket", arguments: $1.0) }
                    )
                    .utf8)),
            .stream(try fixture("openai-text.sse")))
        let tools = try Self.tools(Self.ticketTool(endpoint.baseURL), environment: ["TICKETS_TOKEN": "t"])
        let (harness, token) = try await Self.harness(model: model, tools: tools, agentTools: ["create_ticket"])
        defer { harness.stop() }
        let stream = try await harness.create("Open tickets", token: token)
        let frames = try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        #expect(endpoint.received.isEmpty)
        #expect(!frames.contains { $0.typed?["data"]?["type"]?.stringValue == "tool-started" })
        for (index, (_, field)) in bad.enumerated() {
            let error = frames.first {
                $0.type == "tool-output-error" && $0.typed?["toolCallId"] == .string("call_\(index)")
            }
            let text = try #require(error?.typed?["errorText"]?.stringValue)
            #expect(text.contains(field), "\(text)")
        }
    }

    @Test func eachCallOfATurnFollowsItsOwnToolsApprovalPolicy() async throws {
        let model = try await FakeProvider.start()
        defer { model.stop() }
        let tickets = try await FakeProvider.start()
        defer { tickets.stop() }
        tickets.enqueue(.json(#"{"ticketId":"T-1"}"#))
        let lookup = try await FakeProvider.start()
        defer { lookup.stop() }
        lookup.enqueue(.json(#"{"user":"Ivy"}"#))
        let tools = try Self.tools(
            """
            tools:
              http:
                - {name: create_ticket, url: "\(tickets.baseURL)/t", needsApproval: true}
                - {name: lookup_user, url: "\(lookup.baseURL)/u", needsApproval: false}
            """)
        model.enqueue(
            .stream(
                Array(
                    ProviderTests.calls([
                        (id: "call_A", name: "create_ticket", arguments: #"{"title":"x"}"#),
                        (id: "call_B", name: "lookup_user", arguments: "{}"),
                    ]).utf8)),
            .stream(try fixture("openai-text.sse")))
        let (harness, token) = try await Self.harness(
            model: model, tools: tools, agentTools: ["create_ticket", "lookup_user"])
        defer { harness.stop() }
        let stream = try await harness.create("Who am I? Then open a ticket.", token: token)
        // The call that needs no approval runs while the other waits for its decision.
        let waiting = try await readFrames(stream) { frames in frames.contains { $0.type == "tool-output-available" } }
        let requests = waiting.filter { $0.type == "tool-approval-request" }
        #expect(requests.map { $0.typed?["toolCallId"]?.stringValue } == ["call_A"])
        #expect(lookup.received.count == 1)
        #expect(tickets.received.isEmpty)
        #expect(try await harness.decide(stream.executionID, "call_A", approved: true, token: token).status == 200)
        let rest = try await readFrames(stream) { _ in false }
        #expect(rest.last?.finishReason == "stop")
        #expect(tickets.received.count == 1)
        #expect(rest.contains { $0.type == "tool-output-available" && $0.typed?["toolCallId"] == "call_A" })
    }
}
