import Foundation
import Testing
import TetherClient
import TetherCore

@Suite("Executions end to end", .timeLimit(.minutes(2)))
struct ExecutionFlowTests {
    @Test func createAndStreamToCompletion() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await harness.create("What is the weather in Lyon?")
        #expect(stream.status == 200)
        #expect(stream.headers["content-type"] == "text/event-stream")
        #expect(stream.headers["cache-control"] == "no-cache")
        #expect(stream.headers["x-accel-buffering"] == "no")
        let id = stream.executionID
        #expect(id.hasPrefix("exec_"))
        #expect(stream.headers["location"] == "/run/api/executions/\(id)")
        let frames = try await readFrames(stream) { _ in false }
        // Every durable frame has an id, ids increase, the last frame ends the run.
        let ids = frames.compactMap { $0.event.id.flatMap(StreamID.init) }
        #expect(ids.count == frames.count)
        #expect(ids == ids.sorted() && Set(ids).count == ids.count)
        #expect(frames.first?.type == "data-operation")
        #expect(frames.last?.finishReason == "stop")
        #expect(frames.dropLast().allSatisfy { $0.finishReason == nil })
        #expect(
            frames.allSatisfy {
                $0.chunk["object"]?.stringValue == "chat.completion.chunk" && $0.chunk["id"]?.stringValue == id
            })
        // The reply, the tool call (arguments sent once), and the tool's output.
        let text = replyText(frames)
        #expect(text == "Let me check the weather in Lyon.The weather in Lyon is sunny, 21°C.")
        // As OpenAI streams it: a first chunk with the id and name, then the arguments in fragments, once.
        let calls = toolCalls(frames)
        #expect(calls.count == 1)
        let call = try #require(calls.first)
        #expect(call["function"]?["name"]?.stringValue == "get_weather")
        #expect(call["function"]?["arguments"]?.stringValue == "{\"city\":\"Lyon\"}")
        let output = try #require(frames.first { $0.type == "tool-output-available" }?.typed)
        #expect(output["output"]?["forecast"]?.stringValue == "sunny")
        #expect(output["toolCallId"] == call["id"])
        // The final status is readable as soon as the final frame is.
        let status = try JSON.parse(try await harness.status(id).body)
        #expect(status["status"]?.stringValue == "completed")
        #expect(status["lastEventId"]?.stringValue == frames.last?.event.id)
        #expect(status["agentId"]?.stringValue == "demo")
    }

    @Test func approveThenTheRestOfTheReply() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await harness.create("Please send an email to bob@example.com")
        let id = stream.executionID
        var frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let request = try #require(frames.last?.typed)
        #expect(request["toolName"]?.stringValue == "send_email")
        #expect(request["input"]?["to"]?.stringValue == "bob@example.com")
        let toolCallID = try #require(request["toolCallId"]?.stringValue)
        #expect(request["approvalId"]?.stringValue?.hasPrefix("appr_") == true)

        let status = try JSON.parse(try await harness.status(id).body)
        #expect(status["status"]?.stringValue == "suspended")
        let pending = try #require(status["pendingApprovals"]?.arrayValue?.first)
        #expect(pending["toolCallId"]?.stringValue == toolCallID)
        #expect(pending["toolName"]?.stringValue == "send_email")
        #expect(pending["input"]?["to"]?.stringValue == "bob@example.com")
        #expect(pending["requestedAt"]?.stringValue?.hasSuffix("Z") == true)

        let decision = try await harness.decide(id, toolCallID, approved: true, reason: "looks fine")
        #expect(decision.status == 200)
        #expect(decision.text == "{\"success\":true}")
        frames += try await readFrames(stream) { _ in false }
        let response = try #require(frames.first { $0.type == "tool-approval-response" }?.typed)
        #expect(response["approved"]?.boolValue == true)
        #expect(response["reason"]?.stringValue == "looks fine")
        #expect(frames.contains { $0.type == "tool-output-available" })
        #expect(
            replyText(frames).hasSuffix(
                "Done: I sent the email to bob@example.com (message id msg_\(toolCallID.suffix(8)))."))
        #expect(frames.last?.finishReason == "stop")
        let final = try JSON.parse(try await harness.status(id).body)
        #expect(final["status"]?.stringValue == "completed")
        #expect(final["pendingApprovals"] == nil)
    }

    @Test func denialReasonReachesTheReplyWordForWord() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await harness.create("send an email to carol@example.org")
        let frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let toolCallID = try #require(frames.last?.typed?["toolCallId"]?.stringValue)
        let reason = "Legal hasn't signed off — wait until Monday, please."
        #expect(try await harness.decide(stream.executionID, toolCallID, approved: false, reason: reason).status == 200)
        let rest = try await readFrames(stream) { _ in false }
        let denied = try #require(rest.first { $0.type == "tool-output-denied" }?.typed)
        #expect(denied["reason"]?.stringValue == reason)
        #expect(!rest.contains { $0.type == "tool-output-available" })
        #expect(replyText(rest) == "I did not send the email. You declined: \(reason)")
        #expect(rest.last?.finishReason == "stop")
    }

    @Test func decisionsAreIdempotentAndConflictsRefused() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await harness.create("email dave@example.com")
        let id = stream.executionID
        let frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let toolCallID = try #require(frames.last?.typed?["toolCallId"]?.stringValue)

        let unknown = try await harness.decide(id, "call_nope", approved: true)
        #expect(unknown.status == 404)
        #expect(try JSON.parse(unknown.body)["code"]?.stringValue == "tool_call_not_found")

        #expect(try await harness.decide(id, toolCallID, approved: true).status == 200)
        #expect(try await harness.decide(id, toolCallID, approved: true).status == 200)
        let conflict = try await harness.decide(id, toolCallID, approved: false, reason: "changed my mind")
        #expect(conflict.status == 409)
        #expect(try JSON.parse(conflict.body)["code"]?.stringValue == "decision_conflict")

        let rest = try await readFrames(stream) { _ in false }
        // One decision, logged once.
        #expect(rest.filter { $0.type == "tool-approval-response" }.count == 1)
        #expect(rest.last?.finishReason == "stop")
        // After the end: the same decision is still 200, another tool call 404.
        #expect(try await harness.decide(id, toolCallID, approved: true).status == 200)
        #expect(try await harness.decide(id, toolCallID, approved: false).status == 409)

        let bad = try await harness.http.send(
            .POST, "/run/api/executions/\(id)/approvals/\(toolCallID)",
            headers: harness.auth() + [("Content-Type", "application/json")], body: Array("{\"approved\":\"yes\"}".utf8)
        )
        #expect(bad.status == 400)
        #expect(try JSON.parse(bad.body)["error"]?.stringValue == "approved must be true or false, got string")
    }

    @Test func approvalOnAFinishedExecutionIsAConflict() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        // Two approval requests are impossible with the demo agent, so finish one and decide on a request made
        // by hand in the same execution's approvals hash.
        let stream = try await harness.create("hello")
        _ = try await readFrames(stream) { _ in false }
        let id = stream.executionID
        try await harness.redis.send("HSET", harness.store.keys.approvals(id), "call_late", "{}")
        let late = try await harness.decide(id, "call_late", approved: true)
        #expect(late.status == 409)
        #expect(try JSON.parse(late.body)["code"]?.stringValue == "execution_finished")
    }

    /// A live worker renews its leases (all of them in one command per round): another worker polling for
    /// orphaned jobs never takes over an execution that runs longer than several leases.
    @Test func aLiveWorkerKeepsItsJobsPastTheLease() async throws {
        // A lease long enough that a loaded test machine still renews it in time (renewals come every third), and
        // tokens slow enough that each run lasts more than three leases.
        let harness = try await Harness.start(tokenDelayMilliseconds: 300, withWorker: false, leaseSeconds: 1.2)
        defer { harness.stop() }
        harness.startWorker()
        harness.startWorker()
        let started = ContinuousClock.now
        let streams = [
            try await harness.create("what is the weather in Oslo?"),
            try await harness.create("what is the weather in Rome?"),
        ]
        for stream in streams {
            let frames = try await readFrames(stream) { _ in false }
            #expect(frames.last?.finishReason == "stop")
            let record = try #require(try await harness.store.record(stream.executionID))
            let events = try await harness.store.allEvents(stream.executionID).map { "\($0.id) \($0.type)" }
            #expect(record.fence == 1, "taken over: \(record) \(events)")
        }
        #expect(ContinuousClock.now - started > .seconds(3.6), "the runs were shorter than three leases")
    }

    @Test func aDecisionMadeWhileNoWorkerWaitsIsHonouredByTheWorkerThatTakesOver() async throws {
        let harness = try await Harness.start(withWorker: false, leaseSeconds: 0.6)
        defer { harness.stop() }
        let first = harness.startWorker()
        let stream = try await harness.create("send an email to erin@example.com")
        let id = stream.executionID
        var frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let toolCallID = try #require(frames.last?.typed?["toolCallId"]?.stringValue)
        // The worker dies while the execution waits; the decision arrives while nobody listens.
        await harness.stopWorkerAndWait(first)
        #expect(try await harness.decide(id, toolCallID, approved: true).status == 200)
        // Another worker takes the job over once the lease has expired, finds the decision and finishes.
        harness.startWorker()
        frames += try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        #expect(
            replyText(frames).hasSuffix(
                "Done: I sent the email to erin@example.com (message id msg_\(toolCallID.suffix(8)))."))
        #expect(frames.filter { $0.type == "tool-approval-request" }.count == 1)
        #expect(frames.filter { $0.type == "tool-output-available" }.count == 1)
        let record = try #require(try await harness.store.record(id))
        #expect(record.fence == 2)
    }

    @Test func aWorkerStoppedMidReplyIsResumedWithoutRepeatingOrLosingText() async throws {
        let harness = try await Harness.start(tokenDelayMilliseconds: 15, withWorker: false, leaseSeconds: 1.2)
        defer { harness.stop() }
        let first = harness.startWorker()
        let stream = try await harness.create("count to 60")
        var frames = try await readFrames(stream) { $0.count >= 12 }
        harness.stopWorker(first)
        harness.startWorker()
        frames += try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        #expect(replyText(frames) == (1...60).map(String.init).joined(separator: " "))
        let fence = try #require(try await harness.store.record(stream.executionID)).fence
        #expect(fence == 2, "fence \(fence)")
    }
}

@Suite("Worker slots", .timeLimit(.minutes(2)))
struct WorkerSlotTests {
    @Test
    func executionsWaitingForApprovalDoNotHoldWorkerSlots() async throws {
        let harness = try await Harness.start { $0.workers.concurrency = 2 }
        defer { harness.stop() }
        var waiting: [HTTPStream] = []
        for i in 0..<4 {
            let stream = try await harness.create("email slot\(i)@example.com")
            _ = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
            waiting.append(stream)
        }
        // Four executions wait on a worker with two slots, and new work still runs.
        let weather = try await harness.create("weather in Nice")
        let frames = try await readFrames(weather) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        for stream in waiting { stream.close() }
    }
}

@Suite("Idempotency-Key", .timeLimit(.minutes(2)))
struct IdempotencyTests {
    func post(_ harness: Harness, key: String?, token: String? = nil) async throws -> HTTPStream {
        var headers = harness.auth(token) + [("Content-Type", "application/json")]
        if let key { headers.append(("Idempotency-Key", key)) }
        return try await harness.http.open(
            .POST, "/run/api/executions", headers: headers,
            body: Array(#"{"messages":[{"role":"user","content":"weather in Bern"}]}"#.utf8))
    }

    @Test func theSameKeyStreamsTheSameExecutionAgain() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let first = try await post(harness, key: "order-42")
        let frames = try await readFrames(first) { _ in false }
        #expect(first.headers["idempotent-replayed"] == nil)
        let again = try await post(harness, key: "order-42")
        #expect(again.status == 200)
        #expect(again.executionID == first.executionID)
        #expect(again.headers["idempotent-replayed"] == "true")
        #expect(try await readFrames(again) { _ in false }.map(\.event.raw) == frames.map(\.event.raw))
        // Another key, or another tenant with the same key: a new execution.
        #expect(try await post(harness, key: "order-43").executionID != first.executionID)
        let otherTenant = try await harness.makeKey(tenant: "globex", agent: "demo")
        #expect(try await post(harness, key: "order-42", token: otherTenant).executionID != first.executionID)
        // A malformed key is refused.
        let bad = try await harness.http.send(
            .POST, "/run/api/executions",
            headers: harness.auth() + [("Content-Type", "application/json"), ("Idempotency-Key", "has space")],
            body: Array(#"{"messages":[{"role":"user","content":"hi"}]}"#.utf8))
        #expect(bad.status == 400)
        #expect(try JSON.parse(bad.body)["code"]?.stringValue == "invalid_idempotency_key")
    }
}
