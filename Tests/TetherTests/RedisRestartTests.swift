import Foundation
import TestSupport
import Testing
import TetherClient
import TetherCore

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Redis restarts", .timeLimit(.minutes(2)))
struct RedisRestartTests {
    @Test func liveStreamsAndWaitingWorkersSurviveARedisRestart() async throws {
        // A server of this test's own, with an append-only file, so that it can be killed and restarted with its data.
        let redis = try RedisServer(arguments: ["--appendonly", "yes", "--appendfsync", "always"])
        // The default 30 s lease: recovery must not wait for it to run out.
        let harness = try await Harness.start { $0.redis.url = redis.url }
        defer { harness.stop() }
        let stream = try await harness.create("send an email to judy@example.com")
        let id = stream.executionID
        var frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let toolCallID = try #require(frames.last?.typed?["toolCallId"]?.stringValue)

        redis.stop()
        // While Redis is away the API answers 503 at once; the open stream just waits.
        #expect(try await harness.status(id).status == 503)
        // Longer than the waiting worker's 5 s re-read of the decision, so that one fails during the outage.
        try await Task.sleep(for: .seconds(6))
        try redis.start()

        // Everything reconnects by itself: the gateway's pool and pub/sub, the worker's job loop and its wait.
        #expect(try await eventually(15) { try await harness.status(id).status == 200 })
        #expect(try await harness.decide(id, toolCallID, approved: true).status == 200)
        let decided = ContinuousClock.now
        frames += try await readFrames(stream) { _ in false }
        // Resumed by the same worker, not by a takeover after the lease.
        #expect(ContinuousClock.now - decided < .seconds(15))
        #expect(frames.last?.finishReason == "stop")
        #expect(
            replyText(frames).hasSuffix(
                "Done: I sent the email to judy@example.com (message id msg_\(toolCallID.suffix(8)))."))
        let ids = frames.compactMap(\.event.id)
        #expect(Set(ids).count == ids.count)
        // Redis trouble did not fail the execution.
        #expect(!frames.contains { $0.typed?["data"]?["type"]?.stringValue == "error" })
        #expect(try JSON.parse(try await harness.status(id).body)["status"]?.stringValue == "completed")
    }
}

@Suite("Redis restarts mid-turn", .timeLimit(.minutes(2)))
struct RedisRestartMidTurnTests {
    @Test func aTurnCutByARedisRestartResumesWithoutLosingOrRepeatingTokens() async throws {
        let redis = try RedisServer(arguments: ["--appendonly", "yes", "--appendfsync", "always"])
        // Paced tokens: the turn is streamed by the worker's callback path (TokenStreamer) when Redis goes away.
        let harness = try await Harness.start(tokenDelayMilliseconds: 40) { $0.redis.url = redis.url }
        defer { harness.stop() }
        let stream = try await harness.create("what is the weather in Paris?")
        var frames = try await readFrames(stream) { frames in frames.filter { $0.content != nil }.count >= 3 }
        #expect(!frames.contains { $0.finishReason != nil }, "the run ended before Redis went away")

        redis.stop()
        try await Task.sleep(for: .seconds(1))
        try redis.start()

        frames += try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        let ids = frames.compactMap(\.event.id)
        #expect(Set(ids).count == ids.count, "a frame was delivered twice")
        #expect(!frames.contains { $0.typed?["data"]?["type"]?.stringValue == "error" })
        // The reply is the one an uninterrupted run gives, token for token.
        let reference = try await harness.create("what is the weather in Paris?")
        let uninterrupted = try await readFrames(reference) { _ in false }
        #expect(replyText(frames) == replyText(uninterrupted))
        #expect(try JSON.parse(try await harness.status(stream.executionID).body)["status"]?.stringValue == "completed")
    }
}
