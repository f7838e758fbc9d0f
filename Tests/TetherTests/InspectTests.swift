import Foundation
import TestSupport
import Testing

@testable import TetherCore

/// `tether inspect`: the report's text from entries (no sockets), then the command against a real deployment.
@Suite("tether inspect", .serialized, .timeLimit(.minutes(1)))
struct InspectTests {
    private func entry(_ id: String, _ type: String, _ data: JSON, fence: Int? = 1, status: String? = nil)
        -> ExecutionReport.Entry
    {
        var fields = ["type": type, "data": data.rendered, "ts": String(1_796_292_041_000 + Int(id.prefix(3))!)]
        if let fence { fields["fence"] = String(fence) }
        if let status { fields["status"] = status }
        return (id + "-0", fields)
    }

    @Test func aTurnsTextAndACallsFragmentsReadAsOneLineEachWithWhoWroteThem() throws {
        let record = try #require(
            ExecutionRecord([
                "id": "exec_A", "tenant": "acme", "agentId": "demo", "status": "completed", "fence": "2",
                "owner": "worker-1", "createdAt": "c", "updatedAt": "u",
            ]))
        let entries = [
            entry("100", "execution-started", ["agentId": "demo"], fence: nil, status: "running"),
            entry("101", "turn-started", ["turnId": "t1", "step": 1]),
            entry("102", "text-delta", ["turnId": "t1", "partId": "p1", "text": "Hello "]),
            entry("103", "text-delta", ["turnId": "t1", "partId": "p1", "text": "world"]),
            entry(
                "104", "tool-call-start",
                ["turnId": "t1", "toolCallId": "call_1", "toolName": "send_email", "index": 0]),
            entry(
                "105", "tool-call-delta",
                ["turnId": "t1", "toolCallId": "call_1", "index": 0, "argumentsDelta": "{\"to\":"]),
            entry(
                "106", "tool-call-delta",
                ["turnId": "t1", "toolCallId": "call_1", "index": 0, "argumentsDelta": "\"x\"}"]),
            entry(
                "107", "turn-finished",
                ["turnId": "t1", "finishReason": "tool_calls", "usage": ["inputTokens": 12, "outputTokens": 3]]),
            entry(
                "108", "tool-approval-response",
                ["toolCallId": "call_1", "approved": false, "reason": "no", "decidedBy": "user"], fence: nil),
            entry("109", "turn-started", ["turnId": "t2", "step": 2], fence: 2),
            entry("110", "finish", ["status": "completed"], fence: 2, status: "completed"),
        ]
        let approvals = [
            ApprovalEntry(
                toolCallId: "call_1", request: ["toolName": "send_email", "requestedAt": "r"],
                decision: ["approved": false, "decidedBy": "user", "reason": "no"])
        ]
        let text = ExecutionReport(record: record, entries: entries, approvals: approvals).rendered()
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.first == "execution exec_A  completed")
        #expect(lines.contains("lease: owner worker-1, fence 2"))
        #expect(lines.contains { $0.contains("gw  execution-started") && $0.hasSuffix("→ running") })
        #expect(lines.contains { $0.contains("f1  text-delta ×2") && $0.hasSuffix("Hello world") })
        #expect(lines.contains { $0.contains("f1  tool-call ×3") && $0.hasSuffix("send_email call_1 {\"to\":\"x\"}") })
        #expect(lines.contains { $0.contains("t1 tool_calls tokens 12 in / 3 out") })
        #expect(
            lines.contains { $0.contains("gw  tool-approval-response") && $0.hasSuffix("call_1 denied by user: no") })
        #expect(lines.contains { $0.contains("+0.010s") && $0.contains("f2  finish") })
        #expect(lines.contains("  call_1 send_email requested r → denied by user: no"))
        // Eleven entries, eight lines: the two text deltas and the three pieces of the call were joined.
        #expect(lines.filter { $0.hasPrefix("  ") && $0.contains(":") && $0.contains(" +") }.count == 8)
        #expect(
            ExecutionReport(record: record, entries: entries, approvals: []).rendered(textLimit: 5).contains(
                "Hello… (11 characters)"))
    }

    @Test func inspectsASuspendedAndAFinishedExecutionOfARunningDeployment() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await harness.create("send an email to pat@example.com")
        let frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let call = try #require(frames.last?.typed?["toolCallId"]?.stringValue)
        let id = stream.executionID
        #expect(
            try await eventually(10) {
                try await harness.redis.send("HEXISTS", harness.store.keys.meta(id), "parked").int == 1
            })

        let (waiting, suspended) = try runTether("inspect", harness, arguments: [id])
        #expect(waiting == 0)
        #expect(suspended.hasPrefix("execution \(id)  suspended (parked since "))
        #expect(suspended.contains("waiting: in the deadline set, due at "))
        #expect(suspended.contains("checkpoint: through "))
        #expect(suspended.contains("tool-approval-request      send_email \(call) waits for approval"))
        #expect(suspended.contains("  \(call) send_email requested ") && suspended.contains("→ pending"))

        #expect(try await harness.decide(id, call, approved: true).status == 200)
        _ = try await readFrames(stream) { _ in false }
        let (finished, completed) = try runTether("inspect", harness, arguments: [id])
        #expect(finished == 0)
        #expect(completed.hasPrefix("execution \(id)  completed\n"))
        #expect(completed.contains("checkpoint: none"))
        #expect(completed.contains("gw  tool-approval-response     \(call) approved by user"))
        #expect(completed.contains("f2  tool-started"))
        #expect(completed.contains("finish                     completed  → completed"))
        #expect(completed.contains("→ approved by user at "))

        // An unknown execution is an error; a malformed id is refused before Redis is asked.
        #expect(try runTether("inspect", harness, arguments: ["exec_nosuchexecution"]).0 == 1)
        #expect(try runTether("inspect", harness, arguments: ["not-an-id"]).0 != 0)
    }
}
