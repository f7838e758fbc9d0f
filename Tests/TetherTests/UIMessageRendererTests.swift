import NIOCore
import Testing
import TetherCore

@testable import TetherGateway

/// The UI message renderer as pure logic: logs in, chunks out, no sockets.
@Suite("UI message renderer")
struct UIMessageRendererTests {
    /// A log built entry by entry, with ids `1000-0`, `1000-1`…
    struct Log {
        var events: [StoredEvent] = []

        mutating func add(_ type: EventType, _ fields: [String: JSON] = [:], status: String? = nil) {
            add(type.rawValue, fields, status: status)
        }

        mutating func add(_ type: String, _ fields: [String: JSON], status: String? = nil) {
            var fields = fields
            fields["type"] = .string(type)
            events.append(
                StoredEvent(
                    id: "1000-\(events.count)", type: type, data: JSON.object(fields).rendered, timestamp: 1_000_000,
                    status: status))
        }
    }

    /// Every chunk of a log, as the renderer writes them: (SSE id, JSON text).
    static func render(_ events: [StoredEvent], resume: UIMessageRenderer.Resume = .none) -> [(String?, String)] {
        var renderer = UIMessageRenderer(executionID: "exec_1", resume: resume)
        var buffer = ByteBuffer()
        for event in events { renderer.append(event, to: &buffer) }
        var parser = SSEParser()
        return parser.feed(Array(buffer.readableBytesView)).map { ($0.id, $0.data) }
    }

    static func check(_ chunks: [(String?, String)]) -> [String] {
        var checker = UIMessageChunkChecker()
        var problems: [String] = []
        for (id, data) in chunks where data != "[DONE]" {
            if id == nil { problems.append("a chunk without an id: \(data)") }
            problems += checker.check(data)
        }
        return problems
    }

    static func types(_ chunks: [(String?, String)]) -> [String] {
        chunks.map { (try? JSON.parse($0.1))?["type"]?.stringValue ?? $0.1 }
    }

    /// A v2 log with every event type: an approved call, an aborted turn, arguments that are not JSON, an output
    /// for a call the message never had, a type added later, the finish.
    static var everything: Log {
        var log = Log()
        log.add(.started, ["executionId": "exec_1", "agentId": "demo", "conversationId": "conv_1"], status: "running")
        log.add(.turnStarted, ["turnId": "t1", "step": 1])
        log.add(.text, ["turnId": "t1", "partId": "t1-text", "text": "I'll "])
        log.add(.text, ["turnId": "t1", "partId": "t1-text", "text": "email \"Bob\"."])
        log.add(.toolCallStart, ["turnId": "t1", "toolCallId": "call_1", "toolName": "send_email", "index": 0])
        log.add(.toolCallDelta, ["turnId": "t1", "toolCallId": "call_1", "index": 0, "argumentsDelta": "{\"to\":"])
        log.add(.toolCallDelta, ["turnId": "t1", "toolCallId": "call_1", "index": 0, "argumentsDelta": "\"bob\"}"])
        log.add(
            .turnFinished,
            [
                "turnId": "t1", "finishReason": "tool_calls", "usage": ["inputTokens": 3, "outputTokens": 4],
                "toolCalls": [["toolCallId": "call_1", "toolName": "send_email", "input": ["to": "bob"]]],
            ])
        log.add(
            .approvalRequest,
            ["approvalId": "ap_1", "toolCallId": "call_1", "toolName": "send_email", "input": ["to": "bob"]],
            status: "suspended")
        log.add(
            .approvalResponse, ["toolCallId": "call_1", "approved": true, "reason": .null, "decidedBy": "user"],
            status: "running")
        log.add(.toolStarted, ["toolCallId": "call_1", "toolName": "send_email", "attempt": 1])
        log.add(.toolOutput, ["toolCallId": "call_1", "output": ["messageId": "m1"]])
        log.add(.turnStarted, ["turnId": "t2", "step": 2])
        log.add(.text, ["turnId": "t2", "partId": "t2-text", "text": "Partial"])
        log.add(.toolCallStart, ["turnId": "t2", "toolCallId": "call_2", "toolName": "lookup", "index": 0])
        log.add(.turnAborted, ["turnId": "t2", "reason": "worker_lost"])
        log.add(.turnStarted, ["turnId": "t3", "step": 3])
        log.add(.text, ["turnId": "t3", "partId": "t3-text", "text": "Done."])
        log.add(.toolCallStart, ["turnId": "t3", "toolCallId": "call_3", "toolName": "lookup", "index": 0])
        log.add(.toolCallDelta, ["turnId": "t3", "toolCallId": "call_3", "index": 0, "argumentsDelta": "{oops"])
        log.add(
            .turnFinished,
            [
                "turnId": "t3", "finishReason": "stop", "usage": ["inputTokens": .null, "outputTokens": .null],
                "toolCalls": [["toolCallId": "call_3", "toolName": "lookup", "inputError": "not JSON"]],
            ])
        log.add(.toolError, ["toolCallId": "call_3", "errorText": "The arguments were not accepted"])
        log.add(.toolDenied, ["toolCallId": "call_9", "reason": "no"])
        log.add("some-new-event", ["value": 1])
        log.add(.finish, ["status": "completed"], status: "completed")
        return log
    }

    @Test func everyEventTypeRendersAsChunksTheSDKAccepts() throws {
        let chunks = Self.render(Self.everything.events)
        #expect(Self.check(chunks) == [])
        #expect(
            Self.types(chunks) == [
                "start", "data-status",
                "start-step", "text-start", "text-delta", "text-delta", "tool-input-start", "tool-input-delta",
                "tool-input-delta", "text-end", "tool-input-available", "tool-approval-request", "data-status",
                "data-tool-approval-response", "data-status", "data-tool-started", "tool-output-available",
                "finish-step", "start-step", "text-start", "text-delta", "tool-input-start", "text-end",
                "tool-output-error", "data-turn-aborted", "finish-step",
                "start-step", "text-start", "text-delta", "tool-input-start", "tool-input-delta", "text-end",
                "tool-input-error", "tool-output-error", "data-tool-output-denied", "data-some-new-event",
                "finish-step", "data-status", "finish", "[DONE]",
            ])
        let byType = Dictionary(chunks.map { (Self.types([$0])[0], $0.1) }, uniquingKeysWith: { first, _ in first })
        #expect(byType["start"] == #"{"type":"start","messageId":"exec_1"}"#)
        #expect(
            byType["tool-approval-request"]
                == #"{"type":"tool-approval-request","approvalId":"ap_1","toolCallId":"call_1"}"#)
        #expect(byType["tool-input-error"]?.contains(#""input":"{oops""#) == true)
        #expect(byType["finish"] == #"{"type":"finish","finishReason":"stop"}"#)
        #expect(byType["text-delta"] == #"{"type":"text-delta","id":"t1-text","delta":"I'll "}"#)
        // Ids: the entry's id and the chunk's index within it.
        #expect(chunks[0].0 == "1000-0:0")
        #expect(chunks[1].0 == "1000-0:1")
        #expect(chunks[2].0 == "1000-1:0")
        #expect(chunks.last?.0 == nil, "[DONE] has no id")
        // The same log renders the same every time.
        #expect(Self.render(Self.everything.events).map(\.1) == chunks.map(\.1))
    }

    @Test func resumingAfterAnyChunkWritesExactlyTheChunksAfterIt() {
        let events = Self.everything.events
        let all = Self.render(events)
        for (index, chunk) in all.enumerated() {
            guard let id = chunk.0 else { continue }
            let parts = id.split(separator: ":")
            let resumed = Self.render(
                events, resume: .after(StreamID(String(parts[0]))!, sub: Int(parts[1])!))
            #expect(resumed.map(\.1) == all[(index + 1)...].map(\.1), "after \(id)")
            let byIndex = Self.render(events, resume: .index(index + 1))
            #expect(byIndex.map(\.1) == all[(index + 1)...].map(\.1), "from index \(index + 1)")
        }
        // An entry id alone: after every chunk of that entry.
        let afterEntry = Self.render(events, resume: .after(StreamID("1000-0")!, sub: nil))
        #expect(afterEntry.map(\.1) == all[2...].map(\.1))
    }

    @Test func aFailedRunEndsWithItsErrorThenFinish() {
        var log = Log()
        log.add(.started, ["executionId": "exec_1"], status: "running")
        log.add(.turnStarted, ["turnId": "t1", "step": 1])
        log.add(.text, ["turnId": "t1", "partId": "p", "text": "Hel"])
        log.add(.error, ["code": "model_error", "message": "the model refused"], status: "failed")
        log.add(.finish, ["status": "failed"])
        let chunks = Self.render(log.events)
        #expect(Self.check(chunks) == [])
        #expect(
            Self.types(chunks) == [
                "start", "data-status", "start-step", "text-start", "text-delta", "text-end", "data-error", "error",
                "data-status", "finish-step", "finish", "[DONE]",
            ])
        #expect(chunks.contains { $0.1 == #"{"type":"error","errorText":"the model refused"}"# })
        #expect(chunks.contains { $0.1 == #"{"type":"finish","finishReason":"error"}"# })
    }

    @Test func aCancelledRunEndsWithAbortThenFinish() {
        var log = Log()
        log.add(.started, ["executionId": "exec_1"], status: "running")
        log.add(.error, ["code": "cancelled", "message": "the execution was cancelled"], status: "cancelled")
        log.add(.finish, ["status": "cancelled"])
        let chunks = Self.render(log.events)
        #expect(Self.check(chunks) == [])
        #expect(
            Self.types(chunks) == [
                "start", "data-status", "data-error", "abort", "data-status", "finish", "[DONE]",
            ])
        #expect(chunks.contains { $0.1 == #"{"type":"finish","finishReason":"other"}"# })
    }

    @Test func aTrimmedLogSaysSoStaysValidAndRendersAsTheWholeLogFromItsNextTurn() throws {
        let all = Self.render(Self.everything.events)
        let events = Array(Self.everything.events.dropFirst(4))
        let chunks = Self.render(events)
        #expect(Array(Self.types(chunks).prefix(4)) == ["start", "data-gap", "start-step", "tool-input-start"])
        // The start and the gap belong to no entry: no id.
        #expect(chunks[0].0 == nil && chunks[1].0 == nil)
        #expect(Self.check(Array(chunks.dropFirst(2))) == [])
        // The first kept entries may render otherwise (what was open before the cut is not known); from the next
        // turn on, every chunk and its id are the whole log's.
        let nextTurn = try #require(events.firstIndex { $0.type == EventType.turnStarted.rawValue })
        func from(_ chunks: [(String?, String)]) -> [String] {
            let start = chunks.firstIndex { $0.0?.hasPrefix(events[nextTurn].id + ":") == true } ?? chunks.count
            return chunks[start...].map { ($0.0 ?? "") + " " + $0.1 }
        }
        #expect(!from(chunks).isEmpty)
        #expect(from(chunks) == from(all))
        // A client resuming inside the kept log gets exactly what follows, without the gap.
        let firstKept = try #require(StreamID(events[0].id))
        let resumed = Self.render(events, resume: .after(firstKept, sub: 0))
        #expect(resumed.first?.1 == chunks[3].1)
        // One whose cursor was trimmed away gets the gap first.
        #expect(Self.render(events, resume: .after(StreamID("1000-1")!, sub: nil)).first?.1.contains("start") == true)
    }

    @Test func aVersion1LogRendersToo() {
        var log = Log()
        log.add(.started, ["executionId": "exec_1"], status: "running")
        log.add(.text, ["text": "Let me check."])
        log.add(.toolCall, ["toolCallId": "c1", "toolName": "get_time", "input": ["timezone": "UTC"]])
        log.add(.toolOutput, ["toolCallId": "c1", "output": ["time": "noon"]])
        log.add(.text, ["text": "It is noon."])
        log.add(.finish, ["status": "completed"])
        let chunks = Self.render(log.events)
        #expect(Self.check(chunks) == [])
        #expect(
            Self.types(chunks) == [
                "start", "data-status", "start-step", "text-start", "text-delta", "text-end", "tool-input-available",
                "tool-output-available", "text-start", "text-delta", "text-end", "finish-step", "data-status", "finish",
                "[DONE]",
            ])
    }

    @Test(arguments: [
        ("stop", "stop"), ("tool_calls", "tool-calls"), ("length", "length"), ("content_filter", "content-filter"),
        ("end_turn", "stop"), ("max_tokens", "length"), ("something", "other"),
    ])
    func finishReasonsAreHyphenated(_ given: String, _ rendered: String) {
        #expect(UIMessageRenderer.finishReason(given) == rendered)
    }

    @Test func theCheckerRefusesWhatTheSDKRefuses() {
        var checker = UIMessageChunkChecker()
        #expect(
            !checker.check(#"{"type":"tool-approval-request","approvalId":"a","toolCallId":"c","toolName":"x"}"#)
                .isEmpty)
        #expect(!checker.check(#"{"type":"start","messageId":null}"#).isEmpty)
        #expect(!checker.check(#"{"type":"finish","finishReason":"tool_calls"}"#).isEmpty)
        var order = UIMessageChunkChecker()
        #expect(!order.check(#"{"type":"text-delta","id":"p","delta":"x"}"#).isEmpty)
        #expect(!order.check(#"{"type":"tool-output-available","toolCallId":"c","output":1}"#).isEmpty)
        #expect(!order.check(#"{"type":"tool-output-denied","toolCallId":"c","reason":"no"}"#).isEmpty)
        #expect(!order.check(#"{"type":"tool-input-delta","toolCallId":"c","inputTextDelta":"{"}"#).isEmpty)
        #expect(!order.check(#"{"type":"reasoning-file","id":"p"}"#).isEmpty)
    }
}
