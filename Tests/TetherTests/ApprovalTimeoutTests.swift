import Foundation
import Testing
import TetherClient
import TetherCore

@Suite("Approval deadlines", .timeLimit(.minutes(2)))
struct ApprovalTimeoutTests {
    /// The demo agent with an approval deadline of `seconds`.
    static func demo(timeout seconds: Int) -> (inout TetherConfig) -> Void {
        { config in
            var demo = AgentDefinition.demo
            demo.approvalTimeoutSeconds = seconds
            config.agents = [demo]
        }
    }

    @Test func anUnansweredApprovalIsDeniedByTheSystemAndTheAgentGoesOn() async throws {
        let harness = try await Harness.start(configure: Self.demo(timeout: 2))
        defer { harness.stop() }
        let start = ContinuousClock.now
        let stream = try await harness.create("Please send an email to ivy@example.com")
        let frames = try await readFrames(stream) { _ in false }
        #expect(ContinuousClock.now - start >= .seconds(2))
        let request = try #require(frames.first { $0.type == "tool-approval-request" }?.typed)
        let expires = try #require(request["expiresAt"]?.stringValue.flatMap(Identifiers.milliseconds(isoTimestamp:)))
        #expect(expires > Identifiers.nowMilliseconds() - 10_000)
        let response = try #require(frames.first { $0.type == "tool-approval-response" }?.typed)
        #expect(response["approved"] == false)
        #expect(response["reason"] == "approval timed out")
        #expect(response["decidedBy"] == "system")
        #expect(frames.contains { $0.type == "tool-output-denied" })
        #expect(replyText(frames).hasSuffix("I did not send the email. You declined: approval timed out"))
        #expect(frames.last?.finishReason == "stop")
        // A human's decision after the deadline is a conflict with the system's.
        let id = try #require(request["toolCallId"]?.stringValue)
        #expect(try await harness.decide(stream.executionID, id, approved: true).status == 409)
    }

    @Test func theDeadlineHoldsAcrossAWorkerThatStops() async throws {
        let harness = try await Harness.start(withWorker: false, leaseSeconds: 1.2, configure: Self.demo(timeout: 2))
        defer { harness.stop() }
        let first = harness.startWorker()
        let stream = try await harness.create("Please send an email to jo@example.com")
        _ = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        // The worker stops while the execution waits; the deadline passes while none runs.
        harness.stopWorker(first)
        try await Task.sleep(for: .seconds(2.5))
        harness.startWorker()
        let rest = try await readFrames(stream) { _ in false }
        let response = try #require(rest.first { $0.type == "tool-approval-response" }?.typed)
        #expect(response["reason"] == "approval timed out")
        #expect(rest.last?.finishReason == "stop")
    }
}
