import Foundation
import RedisKit
import Testing
import TetherCore

/// A failover can lose what the old master had not yet replicated: the newest entries of a log, and the meta that
/// named them. A worker must not append on after such a hole (its state is ahead of the log); it runs the execution
/// again from what the log says.
@Suite("A log that lost a worker's entries", .timeLimit(.minutes(1)))
struct DivergenceTests {
    /// What a failover does to the log: its newest entry gone, and the meta naming the one before as the newest (the
    /// two are lost together, they are one script's writes). Returns the id of the entry lost.
    static func loseNewestEntry(_ harness: Harness, _ id: String) async throws -> String {
        let script = RedisScript(
            """
            local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 2)
            redis.call('XDEL', KEYS[2], newest[1][1])
            redis.call('HSET', KEYS[1], 'lastEventId', newest[2][1])
            return newest[1][1]
            """)
        return try await harness.redis.run(
            script, keys: [harness.store.keys.meta(id), harness.store.keys.events(id)], arguments: []
        ).requireString()
    }

    @Test func anAppendAfterAnOwnEntryTheLogLostIsRefused() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let store = harness.store
        let stream = try await harness.create("hi")
        stream.close()
        let id = stream.executionID
        let claim = try #require(try await store.claim(id, owner: "test"))
        func text(_ text: String) -> [NewEvent] { [NewEvent(.text, ["text": .string(text)])] }

        let own = try #require(try await store.append(id, fence: claim.fence, events: text("a")).ids.last)
        // Others append after it (a decision, a cancel): the worker's entry is no longer the newest, and is still
        // there.
        try await store.append(id, fence: claim.fence, events: text("b"))
        let next = try #require(try await store.append(id, fence: claim.fence, events: text("c"), after: own).ids.last)

        let lost = try await Self.loseNewestEntry(harness, id)
        #expect(lost == next)
        await #expect(throws: AppendError.diverged) {
            try await store.append(id, fence: claim.fence, events: text("d"), after: lost)
        }
        #expect(try await store.allEvents(id).map(\.type).last == EventType.text.rawValue, "nothing was appended")

        // An entry gone because the stream was trimmed past it is not a hole.
        try await harness.redis.send("XTRIM", store.keys.events(id), "MAXLEN", 0)
        try await store.append(id, fence: claim.fence, events: text("e"), after: lost)
    }

    @Test func aWorkerWhoseEntriesTheLogLostRunsTheTurnAgainFromTheLog() async throws {
        let harness = try await Harness.start(tokenDelayMilliseconds: 20)
        defer { harness.stop() }
        let stream = try await harness.create("count to 60")
        let id = stream.executionID
        var frames = try await readFrames(stream) { $0.filter { $0.content != nil }.count >= 15 }
        _ = try await Self.loseNewestEntry(harness, id)
        frames += try await readFrames(stream) { _ in false }

        #expect(frames.last?.finishReason == "stop")
        let expected = (1...60).map(String.init).joined(separator: " ")
        // The client was told the turn was void, and then sent it whole.
        #expect(replyText(frames) == expected)
        #expect(frames.contains { $0.typed?["data"]?["type"]?.stringValue == "turn-aborted" })
        // The log has no hole: the turn that finished holds every number, in order.
        let log = try await harness.store.allEvents(id)
        let aborted = try #require(log.lastIndex { $0.type == EventType.turnAborted.rawValue })
        let redone = log[(aborted + 1)...].filter { $0.type == EventType.text.rawValue }
        #expect(redone.map { $0.json["text"]?.stringValue ?? "" }.joined() == expected)
        #expect(try await harness.store.record(id)?.status == .completed)
    }
}
