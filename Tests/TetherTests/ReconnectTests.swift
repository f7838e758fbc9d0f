import Foundation
import Synchronization
import Testing
import TetherClient
import TetherCore

@Suite("Reconnecting to a stream", .timeLimit(.minutes(2)))
struct ReconnectTests {
    /// Runs a weather execution to its end and returns its id and frames.
    func finishedRun(_ harness: Harness) async throws -> (String, [Frame]) {
        let stream = try await harness.create("weather in Oslo")
        let frames = try await readFrames(stream) { _ in false }
        return (stream.executionID, frames)
    }

    @Test func lastEventIDAtEveryPositionReplaysExactlyTheRest() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let (id, frames) = try await finishedRun(harness)
        #expect(frames.count > 10)
        // No cursor: everything, byte for byte as delivered live.
        let all = try await readFrames(try await harness.reconnect(id)) { _ in false }
        #expect(all.map(\.event.raw) == frames.map(\.event.raw))
        for (index, frame) in frames.enumerated().dropLast() {
            let lastID = try #require(frame.event.id)
            let rest = try await readFrames(try await harness.reconnect(id, headers: [("Last-Event-ID", lastID)])) {
                _ in false
            }
            #expect(rest.map(\.event.raw) == frames[(index + 1)...].map(\.event.raw), "after frame \(index)")
        }
        // The client that has the final frame is told to stop.
        let done = try await harness.reconnect(id, headers: [("Last-Event-ID", frames.last!.event.id!)])
        #expect(done.status == 204)
    }

    /// The benchmark's client reads chunks on the event loop (`HTTPClient.stream`): it must see the same bytes.
    @Test func theCallbackClientReadsTheSameBytes() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let (id, frames) = try await finishedRun(harness)
        let received = Mutex<[UInt8]>([])
        let (status, headers) = try await harness.http.stream(
            .GET, "/run/api/executions/\(id)/stream", headers: harness.auth()
        ) { chunk in received.withLock { $0 += chunk.readableBytesView } }
        #expect(status == 200)
        #expect(headers["content-type"] == "text/event-stream")
        let text = String(decoding: received.withLock { $0 }, as: UTF8.self)
        #expect(text == frames.map { $0.event.raw }.joined())
    }

    @Test func queryParameterAndStartIndex() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let (id, frames) = try await finishedRun(harness)
        let viaQuery = try await readFrames(
            try await harness.reconnect(id, query: "?lastEventId=\(frames[2].event.id!)")
        ) { _ in false }
        #expect(viaQuery.map(\.event.raw) == frames[3...].map(\.event.raw))
        let skipped = try await readFrames(try await harness.reconnect(id, headers: [("x-stream-start-index", "5")])) {
            _ in false
        }
        #expect(skipped.map(\.event.raw) == frames[5...].map(\.event.raw))
        let zero = try await readFrames(try await harness.reconnect(id, headers: [("x-stream-start-index", "0")])) {
            _ in false
        }
        #expect(zero.count == frames.count)
        let past = try await harness.reconnect(id, headers: [("x-stream-start-index", "100000")])
        #expect(past.status == 204)
        let bad = try await harness.http.send(
            .GET, "/run/api/executions/\(id)/stream", headers: harness.auth() + [("x-stream-start-index", "-1")])
        #expect(bad.status == 400)
    }

    @Test(arguments: ["abc", "12", "1-2-3", "-1-0", "1-", "1-0x", "99999999999999999999999-0"])
    func malformedLastEventIDIs400(_ value: String) async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let (id, _) = try await finishedRun(harness)
        let response = try await harness.http.send(
            .GET, "/run/api/executions/\(id)/stream", headers: harness.auth() + [("Last-Event-ID", value)])
        #expect(response.status == 400)
        let body = try JSON.parse(response.body)
        #expect(body["code"]?.stringValue == "invalid_last_event_id")
        #expect(response.headers["content-type"] == "application/json")
    }

    @Test func reconnectInTheMiddleOfALiveRun() async throws {
        let harness = try await Harness.start(tokenDelayMilliseconds: 15)
        defer { harness.stop() }
        let stream = try await harness.create("what time is it?")
        let id = stream.executionID
        let firstPart = try await readFrames(stream) { $0.count >= 3 }
        stream.close()
        // Reconnect to the same gateway while the worker keeps appending.
        let resumed = try await harness.reconnect(id, headers: [("Last-Event-ID", firstPart.last!.event.id!)])
        #expect(resumed.status == 200)
        let rest = try await readFrames(resumed) { _ in false }
        #expect(rest.last?.finishReason == "stop")
        // Nothing lost, nothing repeated: the two parts are the whole log.
        let whole = try await readFrames(try await harness.reconnect(id)) { _ in false }
        #expect((firstPart + rest).map(\.event.raw) == whole.map(\.event.raw))
    }

    @Test func heartbeatsKeepAnIdleStreamAlive() async throws {
        let harness = try await Harness.start(heartbeatSeconds: 0.1)
        defer { harness.stop() }
        let stream = try await harness.create("send an email to frank@example.com")
        let frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let sawRequest = frames.last?.type == "tool-approval-request"
        // Idle now: only heartbeats arrive.
        while stream.events.comments < 3 {
            guard try await stream.events.pump() else { break }
        }
        #expect(sawRequest)
        #expect(stream.events.comments >= 3)
        stream.close()
    }

    @Test func trimmedHistoryGivesAnExplicitGapFrame() async throws {
        let harness = try await Harness.start { $0.streams.maxLength = 1 }
        defer { harness.stop() }
        let (id, _) = try await finishedRun(harness)
        // Trim hard so that the history now starts late.
        try await harness.redis.send("XTRIM", harness.store.keys.events(id), "MAXLEN", 2)
        let retained = ExecutionStore.parseEntries(
            try await harness.redis.send("XRANGE", harness.store.keys.events(id), "-", "+"))
        #expect(retained.count == 2)
        let frames = try await readFrames(try await harness.reconnect(id, headers: [("Last-Event-ID", "1-0")])) { _ in
            false
        }
        let gap = try #require(frames.first)
        #expect(gap.event.id == nil)
        #expect(gap.typed?["data"]?["type"]?.stringValue == "gap")
        #expect(gap.typed?["data"]?["after"]?.stringValue == "1-0")
        #expect(gap.typed?["data"]?["resumeFrom"]?.stringValue == retained.first?.id)
        #expect(frames.dropFirst().map { $0.event.id } == retained.map(\.id))
    }
}
