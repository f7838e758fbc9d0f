import Foundation
import Testing
import TetherCore

@testable import TetherWorker

/// A checkpoint holds every entry of the log before it, whoever appended them.
@Suite("Checkpoints", .timeLimit(.minutes(1)))
struct CheckpointTests {
    /// A decision lands between two of the runner's appends (one call waits for approval while another runs): the
    /// checkpoint of a later append must hold it, or a run resumed from there waits for a decision already made.
    @Test func aDecisionAppendedBetweenTheRunnersAppendsIsInTheNextCheckpoint() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let store = harness.store
        let stream = try await harness.create("send an email to pat@example.com")
        stream.close()
        let id = stream.executionID
        let claim = try #require(try await store.claim(id, owner: "test"))
        let run = ExecutionRun(store: store, executionID: id, fence: claim.fence)
        try await run.load()
        try await run.append([NewEvent(.turnStarted, ["turnId": "turn_1", "step": 1])])
        try await run.append([
            NewEvent(
                .turnFinished,
                [
                    "turnId": "turn_1", "finishReason": "tool_calls",
                    "toolCalls": [
                        ["toolCallId": "call_a", "toolName": "send_email", "input": [:]],
                        ["toolCallId": "call_c", "toolName": "get_time", "input": [:]],
                    ],
                ])
        ])
        try await run.append([
            NewEvent(
                .approvalRequest, ["toolCallId": "call_a", "toolName": "send_email"], status: .suspended,
                approvalField: ("call_a", "{}"))
        ])
        // The human decides while the other call runs.
        #expect(try await store.decide(id, toolCallID: "call_a", approved: true, reason: nil) == .recorded)
        try await run.append([NewEvent(.toolStarted, ["toolCallId": "call_c", "toolName": "get_time", "attempt": 1])])
        try await run.append([NewEvent(.toolOutput, ["toolCallId": "call_c", "output": "noon"])])

        // The running state has the decision, and so has the checkpoint a resumed run would start from.
        #expect(run.call("call_a")?.decision?.approved == true)
        let checkpoint = try #require(try await store.checkpoint(id))
        let restored = try #require(AgentState(checkpoint: try JSON.parse(checkpoint.state)))
        let log = try await store.allEvents(id)
        let decision = try #require(log.firstIndex { $0.type == EventType.approvalResponse.rawValue })
        let through = try #require(log.firstIndex { $0.id == checkpoint.through })
        #expect(through > decision)
        #expect(restored.turns.last?.calls.first { $0.id == "call_a" }?.decision?.approved == true)
        #expect(restored.turns.last?.calls.first { $0.id == "call_c" }?.result != nil)

        // A run resumed from it finds the decision without waiting.
        let resumed = ExecutionRun(store: store, executionID: id, fence: claim.fence)
        try await resumed.load()
        #expect(resumed.call("call_a")?.decision?.approved == true)
    }
}
