import Foundation
import Testing
import TetherClient
import TetherCore

/// The Vercel AI SDK UI message stream, driven as `useChat` with `WorkflowChatTransport` drives it: real HTTP, the
/// format header on create and on every reconnect, `startIndex` reconnects.
@Suite("The UI message stream", .timeLimit(.minutes(2)))
struct UIMessageStreamTests {
    static let format = ("x-tether-stream-format", "ui-message")

    func create(_ harness: Harness, _ body: JSON, token: String? = nil) async throws -> HTTPStream {
        try await harness.http.open(
            .POST, "/run/api/executions",
            headers: harness.auth(token) + [("Content-Type", "application/json"), Self.format],
            body: Array(body.rendered.utf8))
    }

    func create(_ harness: Harness, _ text: String, token: String? = nil) async throws -> HTTPStream {
        try await create(harness, ["messages": [["role": "user", "content": .string(text)]]], token: token)
    }

    func reconnect(_ harness: Harness, _ id: String, query: String = "", headers: [(String, String)] = [])
        async throws -> HTTPStream
    {
        try await harness.reconnect(id, headers: [Self.format] + headers, query: query)
    }

    /// Reads to the end and checks every chunk against the AI SDK 6.0.0 schemas and its processor's order.
    func readChecked(_ stream: HTTPStream, until stop: ([SSEEvent]) -> Bool = { _ in false }) async throws
        -> [SSEEvent]
    {
        let events = try await stream.readEvents(until: stop)
        return events
    }

    static func problems(_ events: [SSEEvent]) -> [String] {
        var checker = UIMessageChunkChecker()
        var problems: [String] = []
        for (index, event) in events.enumerated() {
            if event.data == "[DONE]" {
                if index != events.count - 1 { problems.append("[DONE] is not last") }
                continue
            }
            if event.id == nil { problems.append("chunk \(index) has no id") }
            problems += checker.check(event.data)
        }
        return problems
    }

    static func types(_ events: [SSEEvent]) -> [String] {
        events.map { (try? JSON.parse($0.data))?["type"]?.stringValue ?? $0.data }
    }

    static func text(_ events: [SSEEvent]) -> String {
        events.compactMap { event -> String? in
            let chunk = try? JSON.parse(event.data)
            return chunk?["type"] == "text-delta" ? chunk?["delta"]?.stringValue : nil
        }.joined()
    }

    @Test func aRunInTheUIFormatIsValidEndsWithDoneAndResumesAfterEveryChunk() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await create(harness, "weather in Oslo")
        #expect(stream.status == 200)
        #expect(stream.headers["x-vercel-ai-ui-message-stream"] == "v1")
        #expect(stream.headers["content-type"] == "text/event-stream")
        let id = stream.executionID
        let events = try await readChecked(stream)
        #expect(Self.problems(events) == [])
        #expect(events.last?.data == "[DONE]")
        let types = Self.types(events)
        #expect(types.first == "start")
        #expect(types.contains("tool-input-available") && types.contains("tool-output-available"))
        #expect(types.dropLast().last == "finish")
        #expect(
            events.first { $0.data.hasPrefix(#"{"type":"finish""#) }?.data
                == #"{"type":"finish","finishReason":"stop"}"#)
        #expect(Self.text(events).contains("The weather in Oslo"))
        #expect(events.first?.data == #"{"type":"start","messageId":"\#(id)"}"#)
        // Every chunk its own id; a reconnect after any of them gets exactly the chunks after it.
        let ids = events.dropLast().compactMap(\.id)
        #expect(Set(ids).count == events.count - 1)
        let whole = try await readChecked(try await reconnect(harness, id))
        #expect(whole.map(\.raw) == events.map(\.raw), "a render is the same every time")
        for (index, chunkID) in ids.enumerated() {
            let rest = try await readChecked(try await reconnect(harness, id, headers: [("Last-Event-ID", chunkID)]))
            #expect(rest.map(\.raw) == events[(index + 1)...].map(\.raw), "after \(chunkID)")
        }
        // ?format= works where the header cannot be set, and on create too.
        let viaQuery = try await readChecked(
            try await harness.reconnect(id, query: "?format=ui-message&lastEventId=\(ids[2])"))
        #expect(viaQuery.map(\.raw) == events[3...].map(\.raw))
        let created = try await harness.http.open(
            .POST, "/run/api/executions?format=ui-message",
            headers: harness.auth() + [("Content-Type", "application/json")],
            body: Array(#"{"messages":[{"role":"user","content":"hi"}]}"#.utf8))
        #expect(created.headers["x-vercel-ai-ui-message-stream"] == "v1")
        #expect(Self.problems(try await readChecked(created)) == [])
    }

    @Test func startIndexCountsChunksAndTheTailIndexIsTheLastOne() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await create(harness, "what time is it")
        let id = stream.executionID
        let events = try await readChecked(stream)
        let chunks = events.count - 1
        for start in [0, 1, 5, chunks - 1] {
            let response = try await reconnect(harness, id, query: "?startIndex=\(start)")
            #expect(response.headers["x-workflow-stream-tail-index"] == String(chunks - 1))
            #expect(response.headers["x-workflow-run-id"] == id)
            let rest = try await readChecked(response)
            #expect(rest.map(\.raw) == events[start...].map(\.raw), "startIndex=\(start)")
        }
        for back in [1, 3, chunks, chunks + 10] {
            let response = try await reconnect(harness, id, query: "?startIndex=-\(back)")
            #expect(response.headers["x-workflow-stream-tail-index"] == String(chunks - 1))
            let rest = try await readChecked(response)
            #expect(rest.map(\.raw) == events[max(0, chunks - back)...].map(\.raw), "startIndex=-\(back)")
        }
        // The client that has every chunk: 200 and [DONE] (a 204 would make the transport give up).
        let past = try await reconnect(harness, id, query: "?startIndex=\(chunks)")
        #expect(past.status == 200)
        #expect(try await readChecked(past).map(\.data) == ["[DONE]"])
        for bad in ["x", "1.5", "--1", "-", "99999999999999999999"] {
            let response = try await harness.http.send(
                .GET, "/run/api/executions/\(id)/stream?startIndex=\(bad)", headers: harness.auth() + [Self.format])
            #expect(response.status == 400, "startIndex=\(bad)")
        }
        let badFormat = try await harness.http.send(
            .GET, "/run/api/executions/\(id)/stream", headers: harness.auth() + [("x-tether-stream-format", "xml")])
        #expect(badFormat.status == 400)
        #expect(String(decoding: badFormat.body, as: UTF8.self).contains("invalid_stream_format"))
        // On create too, before anything is created (a valid header does not excuse a bad query).
        let before = try await harness.total("XLEN", of: harness.store.keys.jobs(shard:))
        let badCreate = try await harness.http.send(
            .POST, "/run/api/executions?format=UI-MESSAGE",
            headers: harness.auth() + [("Content-Type", "application/json"), Self.format],
            body: Array(#"{"messages":[{"role":"user","content":"hi"}]}"#.utf8))
        #expect(badCreate.status == 400)
        #expect(try await harness.total("XLEN", of: harness.store.keys.jobs(shard:)) == before)
        let badID = try await harness.http.send(
            .GET, "/run/api/executions/\(id)/stream",
            headers: harness.auth() + [Self.format, ("Last-Event-ID", "1-0:x")])
        #expect(badID.status == 400)
    }

    /// As `WorkflowChatTransport` does it: the create stream drops before `finish`, the transport reconnects with
    /// `startIndex` = chunks received, over and over, until `finish`; the approval comes in between.
    @Test func aFullApprovalRoundThroughStartIndexReconnects() async throws {
        let harness = try await Harness.start(heartbeatSeconds: 0.3)
        defer { harness.stop() }
        let stream = try await create(harness, "Please email bob@example.com")
        let id = stream.executionID
        var events = try await readChecked(stream) { $0.contains { $0.data.contains("tool-approval-request") } }
        stream.close()
        let request = try #require(try JSON.parse(events.last!.data).objectValue)
        #expect(request.keys.sorted() == ["approvalId", "toolCallId", "type"])
        let toolCallID = try #require(request["toolCallId"]?.stringValue)
        // At the live tail the reconnect waits, with heartbeats, rather than answering 204.
        let waiting = try await reconnect(harness, id, query: "?startIndex=\(events.count)")
        #expect(waiting.status == 200)
        var sawHeartbeat = false
        var parser = SSEParser()
        for try await chunk in waiting.body {
            events += parser.feed(chunk.readableBytesView)
            if String(buffer: chunk).contains(": ping") {
                sawHeartbeat = true
                break
            }
        }
        waiting.close()
        #expect(sawHeartbeat)
        #expect(try await harness.decide(id, toolCallID, approved: true).status == 200)
        while events.last?.data != "[DONE]" {
            let next = try await reconnect(
                harness, id, query: "?startIndex=\(events.filter { $0.data != "[DONE]" }.count)")
            events += try await readChecked(next)
        }
        #expect(Self.problems(events) == [])
        let types = Self.types(events)
        #expect(types.contains("tool-approval-request"))
        #expect(types.contains("data-tool-approval-response"))
        #expect(types.contains("tool-output-available"))
        #expect(types.dropLast().last == "finish")
        #expect(Self.text(events).contains("Done: I sent the email to bob@example.com"))
        // The pieces match one whole render.
        let whole = try await readChecked(try await reconnect(harness, id))
        #expect(whole.map(\.raw) == events.map(\.raw))
    }

    @Test func aDeniedCallGetsToolOutputDeniedWithNoReasonKey() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await create(harness, "Please email bob@example.com")
        let id = stream.executionID
        var events = try await readChecked(stream) { $0.contains { $0.data.contains("tool-approval-request") } }
        let toolCallID = try #require(try JSON.parse(events.last!.data)["toolCallId"]?.stringValue)
        #expect(try await harness.decide(id, toolCallID, approved: false, reason: "not now").status == 200)
        events += try await readChecked(stream)
        #expect(Self.problems(events) == [])
        #expect(events.contains { $0.data == #"{"type":"tool-output-denied","toolCallId":"\#(toolCallID)"}"# })
        #expect(Self.types(events).dropLast().last == "finish")
    }

    @Test func aCancelledRunEndsWithAbortAndFinish() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await create(harness, "Please email bob@example.com")
        let id = stream.executionID
        var events = try await readChecked(stream) { $0.contains { $0.data.contains("tool-approval-request") } }
        let cancel = try await harness.http.send(.POST, "/run/api/executions/\(id)/cancel", headers: harness.auth())
        #expect(cancel.status == 200)
        events += try await readChecked(stream)
        #expect(Self.problems(events) == [])
        let types = Self.types(events)
        #expect(types.suffix(2) == ["finish", "[DONE]"])
        #expect(types.firstIndex(of: "abort").map { $0 < types.count - 2 } == true)
        #expect(!types.contains("error"))
        #expect(events.contains { $0.data == #"{"type":"finish","finishReason":"other"}"# })
        // Reconnecting to the finished run from its start renders the same.
        #expect(try await readChecked(try await reconnect(harness, id)).map(\.raw) == events.map(\.raw))
    }

    @Test func aFailedRunEndsWithErrorAndFinish() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        fake.enqueue(
            .error(.badRequest, #"{"error":{"message":"bad model","type":"invalid_request_error","code":null}}"#))
        let (harness, token) = try await Harness.startWithBot(model: fake, tools: ToolSources(), agentTools: [])
        defer { harness.stop() }
        let events = try await readChecked(try await create(harness, "hi", token: token))
        #expect(Self.problems(events) == [])
        let errorChunk = try #require(events.first { $0.data.hasPrefix(#"{"type":"error""#) })
        #expect(try JSON.parse(errorChunk.data).objectValue?.keys.sorted() == ["errorText", "type"])
        #expect(events.contains { $0.data == #"{"type":"finish","finishReason":"error"}"# })
        #expect(Self.types(events).suffix(2) == ["finish", "[DONE]"])
    }

    /// What `useChat` sends: UI messages, and on the second turn the whole history with its step, tool and data
    /// parts.
    @Test func createTakesTheAISDKMessageShapeWithASecondTurnsHistory() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let first: JSON = [
            "id": "chat1",
            "messages": [
                ["id": "m1", "role": "user", "parts": [["type": "text", "text": "hello there"]]]
            ],
            "conversationId": "chat1",
        ]
        let firstEvents = try await readChecked(try await create(harness, first))
        #expect(Self.problems(firstEvents) == [])
        let assistantParts: [JSON] = firstEvents.compactMap { try? JSON.parse($0.data) }.compactMap { chunk in
            switch chunk["type"]?.stringValue {
            case "start-step": return ["type": "step-start"]
            case "text-delta": return ["type": "text", "text": chunk["delta"] ?? ""]
            case "data-status": return ["type": "data-status", "id": "status", "data": chunk["data"] ?? .null]
            default: return nil
            }
        }
        let toolPart: JSON = [
            "type": "tool-get_weather", "toolCallId": "call_x", "state": "output-available", "input": ["city": "Paris"],
            "output": ["forecast": "sunny"],
        ]
        let second: JSON = [
            "messages": [
                ["id": "m1", "role": "user", "parts": [["type": "text", "text": "hello there"]]],
                [
                    "id": .string(firstEvents.first.map { try! JSON.parse($0.data)["messageId"]!.stringValue! } ?? ""),
                    "role": "assistant", "parts": .array(assistantParts + [toolPart]),
                ],
                ["id": "m3", "role": "user", "parts": [["type": "text", "text": "what time is it?"]]],
            ],
            "conversationId": "chat1",
        ]
        let secondEvents = try await readChecked(try await create(harness, second))
        #expect(Self.problems(secondEvents) == [])
        #expect(Self.text(firstEvents).contains("hello there"))
        #expect(Self.text(secondEvents).contains("Let me look at the clock."))
        // A user message with nothing to say, or parts that are not an array, is refused.
        for bad: JSON in [
            ["messages": [["role": "user", "parts": [["type": "step-start"]]]]],
            ["messages": [["role": "user", "parts": "hello"]]],
            ["messages": [["role": "tool", "parts": [["type": "text", "text": "x"]]]]],
            ["messages": [["role": "user", "parts": [["type": "text"]]]]],
        ] {
            let response = try await harness.http.send(
                .POST, "/run/api/executions", headers: harness.auth() + [("Content-Type", "application/json")],
                body: Array(bad.rendered.utf8))
            #expect(response.status == 400, "\(bad.rendered)")
        }
    }

    @Test func corsAllowsTheFormatHeaderAndExposesTheTailIndex() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let preflight = try await harness.http.send(
            .OPTIONS, "/run/api/executions/exec_x/stream",
            headers: [
                ("Origin", "https://app.example"), ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "authorization, x-tether-stream-format"),
            ])
        #expect(preflight.status == 204)
        let allowed = (preflight.headers["access-control-allow-headers"] ?? "").lowercased()
        #expect(allowed.contains("x-tether-stream-format"))
        let stream = try await harness.http.open(
            .POST, "/run/api/executions",
            headers: harness.auth() + [
                ("Content-Type", "application/json"), Self.format, ("Origin", "https://app.example"),
            ], body: Array(#"{"messages":[{"role":"user","content":"hi"}]}"#.utf8))
        let exposed = (stream.headers["access-control-expose-headers"] ?? "").lowercased()
        #expect(exposed.contains("x-workflow-stream-tail-index"))
        #expect(exposed.contains("x-workflow-run-id"))
        _ = try await readChecked(stream)
    }
}
