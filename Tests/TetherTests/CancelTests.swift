import Foundation
import TestSupport
import Testing
import TetherClient
import TetherCore

@Suite("Cancel", .timeLimit(.minutes(2)))
struct CancelTests {
    func cancel(_ harness: Harness, _ id: String, token: String? = nil) async throws -> HTTPResult {
        try await harness.http.send(.POST, "/run/api/executions/\(id)/cancel", headers: harness.auth(token))
    }

    /// The stream's end after a cancel: the `cancelled` error operation, then the final frame.
    func expectCancelledEnd(_ frames: [Frame]) {
        #expect(frames.last?.finishReason == "error")
        let error = frames.dropLast().last?.typed?["data"]
        #expect(error?["type"] == "error")
        #expect(error?["code"] == "cancelled")
    }

    @Test func cancelDuringAModelStreamAbortsTheRequestWithinASecond() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        let body = try fixture("openai-text.sse")
        var hanging = FakeProvider.Reply.stream(Array(body[..<offsets(of: " sunny", in: body)[0]]))
        hanging.hang = true
        fake.enqueue(hanging)
        let harness = try await Harness.start { config in
            var model = AgentDefinition.Model(provider: .openai, name: "gpt-4.1-mini")
            model.baseURL = fake.baseURL + "/v1"
            model.apiKeyEnvironment = providerKeyVariable
            config.agents = [AgentDefinition(id: "bot", model: model), .demo]
        }
        defer { harness.stop() }
        let token = try await harness.makeKey(tenant: "acme", agent: "bot")
        let stream = try await harness.create("Weather?", token: token)
        _ = try await readFrames(stream) { frames in frames.contains { $0.content == " and" } }
        let start = ContinuousClock.now
        #expect(try await cancel(harness, stream.executionID, token: token).status == 200)
        #expect(try await eventually(5) { fake.connectionsClosed == 1 })
        // About 0.1 s on an idle machine (the fake notices at its next write, every 50 ms); the bound leaves room for
        // a loaded CI machine while still telling an aborted request from one left to run (it would never end).
        let aborted = ContinuousClock.now - start
        #expect(aborted < .seconds(3), "the model request was aborted after \(aborted)")
        let rest = try await readFrames(stream) { _ in false }
        expectCancelledEnd(rest)
        let status = try JSON.parse(try await harness.status(stream.executionID, token: token).body)
        #expect(status["status"] == "cancelled")
        #expect(status["error"]?["code"] == "cancelled")
        // Nothing was appended after the final frame.
        let events = try await harness.store.allEvents(stream.executionID)
        #expect(events.last?.type == "finish")
    }

    @Test func cancelDuringAnApprovalWaitThenEveryLaterCallIsRefusedOrIdempotent() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await harness.create("Please send an email to kay@example.com")
        let id = stream.executionID
        let frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let toolCallID = try #require(frames.last?.typed?["toolCallId"]?.stringValue)
        #expect(try await cancel(harness, id).status == 200)
        expectCancelledEnd(try await readFrames(stream) { _ in false })
        // The worker let the execution go.
        #expect(try await eventually(3) { harness.workersActive == 0 })
        #expect(try await cancel(harness, id).status == 200, "cancelling again changes nothing")
        let decision = try await harness.decide(id, toolCallID, approved: true)
        #expect(decision.status == 409)
        #expect(try JSON.parse(decision.body)["code"] == "execution_finished")
        // A reconnect after the final frame is over at once.
        let done = try await harness.http.send(.GET, "/run/api/executions/\(id)/stream", headers: harness.auth())
        #expect(done.status == 200)
        expectCancelledEnd(try readAll(done))
    }

    @Test func cancelTakesEffectWithNoWorkerRunningTheExecution() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let stream = try await harness.create("hi")
        #expect(try await cancel(harness, stream.executionID).status == 200)
        expectCancelledEnd(try await readFrames(stream) { _ in false })
        harness.startWorker()
        // The worker that takes the job finds it cancelled and appends nothing.
        #expect(
            try await eventually(5) {
                try await harness.redis.send("XLEN", harness.store.keys.jobs(for: stream.executionID)).int == 0
            })
        #expect(try await harness.store.allEvents(stream.executionID).last?.type == "finish")
    }

    @Test func aFinishedExecutionCannotBeCancelledAndOthersSeeNothing() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await harness.create("hi")
        _ = try await readFrames(stream) { _ in false }
        let finished = try await cancel(harness, stream.executionID)
        #expect(finished.status == 409)
        #expect(try JSON.parse(finished.body)["code"] == "execution_finished")
        #expect(try await cancel(harness, "exec_nosuch").status == 404)
        let other = try await harness.makeKey(tenant: "globex", agent: "demo")
        #expect(try await cancel(harness, stream.executionID, token: other).status == 404)
    }

    /// The frames of a whole response.
    func readAll(_ result: HTTPResult) throws -> [Frame] {
        var parser = SSEParser()
        return parser.feed(result.body).map(Frame.init)
    }
}
