import Foundation
import NIOHTTP1
import RedisKit
import TestSupport
import Testing
import TetherClient
import TetherCore
import TetherGateway
import TetherWorker

@Suite("Input hardening: start index, forwarded headers, error text, methods", .timeLimit(.minutes(2)))
struct HardeningTests {
    @Test func aStartIndexIsResolvedWithoutReadingTheStreamIntoTheGateway() async throws {
        // A Redis server of its own, so that its byte counter counts this test alone.
        let server = try RedisServer()
        defer { server.stop() }
        let harness = try await Harness.start { $0.redis.url = server.url }
        defer { harness.stop() }
        let stream = try await harness.create("count to 3000")
        let id = stream.executionID
        let all = try await readFrames(stream) { _ in false }
        #expect(all.last?.finishReason == "stop")
        let count = all.count
        #expect(count > 3000)
        func bytesOut() async throws -> Int {
            let info = try await harness.redis.send("INFO", "stats").string ?? ""
            let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("total_net_output_bytes:") }
            return Int(line?.split(separator: ":").last ?? "") ?? -1
        }
        // Skip all but the last two frames: only those two are read and sent.
        let before = try await bytesOut()
        let tail = try await harness.reconnect(id, headers: [("x-stream-start-index", String(count - 2))])
        let frames = try await readFrames(tail) { _ in false }
        let spent = try await bytesOut() - before
        #expect(frames.map(\.event.id) == all.suffix(2).map(\.event.id))
        // The entries skipped weigh about 300 KB; resolving the index moved a few ids.
        #expect(spent < 30_000, "resolving x-stream-start-index moved \(spent) bytes out of Redis")
        // An index at or past the end of a finished execution: nothing more to send.
        for index in [count, count + 1, Int.max] {
            let done = try await harness.http.send(
                .GET, "/run/api/executions/\(id)/stream",
                headers: harness.auth() + [("x-stream-start-index", String(index))])
            #expect(done.status == 204, "x-stream-start-index \(index)")
        }
        let middle = try await harness.reconnect(id, headers: [("x-stream-start-index", "1500")])
        let rest = try await readFrames(middle) { _ in false }
        #expect(rest.map(\.event.id) == all.dropFirst(1500).map(\.event.id))
    }

    @Test func aStartIndexInsideTrimmedHistoryGetsAGapFrame() async throws {
        let harness = try await Harness.start { $0.streams.maxLength = 1 }
        defer { harness.stop() }
        let stream = try await harness.create("count to 1000")
        let id = stream.executionID
        _ = try await readFrames(stream) { _ in false }
        let history = try #require(try await harness.store.history(id))
        let trimmed = history.entriesAdded - history.length
        #expect(trimmed > 10)
        let reconnect = try await harness.reconnect(id, headers: [("x-stream-start-index", "5")])
        let frames = try await readFrames(reconnect) { _ in false }
        let gap = try #require(frames.first?.typed?["data"])
        #expect(gap["type"]?.stringValue == "gap")
        #expect(gap["startIndex"]?.numberValue == 5)
        #expect(gap["resumeFrom"]?.stringValue == history.firstID?.description)
        #expect(frames.dropFirst().first?.event.id == history.firstID?.description)
        // An index just past the trimmed part starts at the oldest entry kept, with no gap.
        let exact = try await harness.reconnect(id, headers: [("x-stream-start-index", String(trimmed))])
        let exactFrames = try await readFrames(exact) { _ in false }
        #expect(exactFrames.first?.event.id == history.firstID?.description)
    }

    @Test func forwardedHeadersAreKeptOnlyWhileTheRunMayNeedThem() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let body = #"""
            {"messages":[{"role":"user","content":"Please send an email to dan@example.com"}],
             "forwardedHeaders":{"authorization":"Bearer user-secret-123","x-user-id":"u1"}}
            """#
        let stream = try await harness.http.open(
            .POST, "/run/api/executions", headers: harness.auth() + [("Content-Type", "application/json")],
            body: Array(body.utf8))
        let id = stream.executionID
        let frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let toolCallID = try #require(frames.last?.typed?["toolCallId"]?.stringValue)
        // While it runs, the worker can read them; they are not part of the input, and the API never shows them.
        #expect(try await harness.store.forwardedHeaders(id)["authorization"] == "Bearer user-secret-123")
        let input = try await harness.redis.send("HGET", harness.store.keys.meta(id), "input").string ?? ""
        #expect(!input.contains("user-secret-123"))
        #expect(try await harness.status(id).text.contains("user-secret-123") == false)
        #expect(try await harness.decide(id, toolCallID, approved: true).status == 200)
        let rest = try await readFrames(stream) { _ in false }
        #expect(rest.last?.finishReason == "stop")
        #expect(!(frames + rest).contains { $0.event.data.contains("user-secret-123") })
        // Once it has ended, they are gone from Redis.
        #expect(try await harness.store.forwardedHeaders(id).isEmpty)
        let meta = try await harness.redis.send("HGETALL", harness.store.keys.meta(id)).stringDictionary ?? [:]
        #expect(meta["forwardedHeaders"] == nil)
        #expect(!meta.values.contains { $0.contains("user-secret-123") })
    }

    struct Boom: Error, CustomStringConvertible {
        var description: String { "Boom at /srv/internal/provider.swift:12 (connection refused to 10.0.0.7)" }
    }

    /// A provider that fails with a Swift error full of internals.
    struct FailingProvider: ModelProvider {
        func streamTurn(_ request: ModelRequest, into sink: any TurnSink) async throws { throw Boom() }
    }

    @Test func aFailedRunTellsTheClientACodeAndAMessageNotTheSwiftError() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let stream = try await harness.create("What's the weather in Paris?")
        let id = stream.executionID
        let runner = AgentRunner(
            store: harness.store, agents: [.demo], providers: ["demo": FailingProvider()],
            logger: Harness.quietLogger("tether.worker"))
        let claim = try #require(try await harness.store.claim(id, owner: "test"))
        try await runner.run(id, fence: claim.fence, jobEntryID: "0-1")
        let frames = try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "error")
        let error = try #require(frames.first { $0.typed?["data"]?["type"]?.stringValue == "error" }?.typed?["data"])
        #expect(error["code"]?.stringValue == "model_error")
        let status = try JSON.parse(try await harness.status(id).body)
        #expect(status["status"]?.stringValue == "failed")
        #expect(status["error"]?["code"]?.stringValue == "model_error")
        for text in [error["message"]?.stringValue ?? "", status["error"]?["message"]?.stringValue ?? ""] {
            #expect(!text.isEmpty)
            for leak in ["Boom", "/srv/", "10.0.0.7", "Error(", "TetherTests", "HardeningTests"] {
                #expect(!text.contains(leak), "\(text)")
            }
        }
    }

    @Test func aKnownPathAskedWithAnotherMethodIs405WithAllow() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let cases: [(HTTPMethod, String, String)] = [
            (.DELETE, "/run/api/executions", "POST"),
            (.GET, "/run/api/executions", "POST"),
            (.PUT, "/run/api/executions/exec_x", "GET, HEAD"),
            (.DELETE, "/run/api/executions/exec_x", "GET, HEAD"),
            (.GET, "/run/api/executions/exec_x/approvals/call_1", "POST"),
            (.POST, "/run/api/executions/exec_x/stream", "GET, HEAD"),
            (.POST, "/healthz", "GET, HEAD"),
            (.PATCH, "/run/api/openapi.json", "GET, HEAD"),
        ]
        for (method, path, allow) in cases {
            let response = try await harness.http.send(method, path, headers: harness.auth())
            #expect(response.status == 405, "\(method) \(path)")
            #expect(response.headers["allow"] == allow, "\(method) \(path)")
            #expect(try JSON.parse(response.body)["code"]?.stringValue == "method_not_allowed")
        }
        let unknown = try await harness.http.send(.DELETE, "/run/api/nothing/here", headers: harness.auth())
        #expect(unknown.status == 404)
        #expect(unknown.headers["allow"] == nil)
    }
}

@Suite("Reconnect cursors and path parameters", .timeLimit(.minutes(2)))
struct CursorInputTests {
    @Test func everyCursorGivenIsCheckedAndAnEmptyOneCountsAsAbsent() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await harness.create("hi")
        let frames = try await readFrames(stream) { _ in false }
        let id = stream.executionID
        let last = try #require(frames.last?.event.id)
        func reconnect(_ headers: [(String, String)], query: String = "") async throws -> HTTPResult {
            try await harness.http.send(
                .GET, "/run/api/executions/\(id)/stream\(query)", headers: harness.auth() + headers)
        }
        // A bad value is 400 even when another cursor is given too.
        #expect(try await reconnect([("Last-Event-ID", "1-0")], query: "?lastEventId=garbage").status == 400)
        #expect(try await reconnect([("Last-Event-ID", "1-0"), ("x-stream-start-index", "-5")]).status == 400)
        #expect(try await reconnect([("x-stream-start-index", "+1")]).status == 400)
        // An empty header does not hide a query cursor.
        #expect(try await reconnect([("Last-Event-ID", "")], query: "?lastEventId=\(last)").status == 204)
        #expect(try await reconnect([("x-stream-start-index", "")]).status == 400)
        // A cursor after the newest event reads as the newest: the stream is over (not held open on nothing).
        let beyond = try await reconnect([("Last-Event-ID", "18446744073709551615-18446744073709551615")])
        #expect(beyond.status == 204)
        // HEAD answers like GET, without a body.
        let head = try await harness.http.send(.HEAD, "/run/api/executions/\(id)", headers: harness.auth())
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
    }

    @Test func pathParametersArePercentDecoded() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await harness.create("Please send an email to lea@example.com")
        let frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let toolCallID = try #require(frames.last?.typed?["toolCallId"]?.stringValue)
        let encodedID = stream.executionID.replacingOccurrences(of: "_", with: "%5F")
        #expect(try await harness.status(encodedID).status == 200)
        let decided = try await harness.decide(
            stream.executionID, toolCallID.replacingOccurrences(of: "_", with: "%5F"), approved: true)
        #expect(decided.status == 200)
        #expect(try await readFrames(stream) { _ in false }.last?.finishReason == "stop")
    }
}
