import Foundation
import RedisKit
import Testing
import TetherClient
import TetherCore
import TetherGateway

@Suite("Live tailing", .timeLimit(.minutes(2)))
struct TailingTests {
    /// Redis closes a subscriber that falls behind its `client-output-buffer-limit pubsub` (a gateway far behind
    /// under load). Streams starting while the gateway's pub/sub connection is down wait for the next one; none ends
    /// early, and every stream has every frame once.
    @Test func streamsStartingWhileThePubSubConnectionIsClosedWaitForTheNextOne() async throws {
        let harness = try await Harness.start(tokenDelayMilliseconds: 5)
        defer { harness.stop() }
        // Only this gateway's subscriber: the other tests share the server.
        let name = " name=gw-\(harness.config.redis.prefix) "
        let killer = Task {
            var kills = 0
            while !Task.isCancelled {
                let list = (try? await harness.redis.send("CLIENT", "LIST", "TYPE", "pubsub").string) ?? ""
                for line in list.split(separator: "\n") where line.contains(name) {
                    guard let id = line.split(separator: " ").first(where: { $0.hasPrefix("id=") })?.dropFirst(3)
                    else { continue }
                    kills += (try? await harness.redis.send("CLIENT", "KILL", "ID", String(id)).int) ?? 0
                }
                try? await Task.sleep(for: .milliseconds(2))
            }
            return kills
        }
        defer { killer.cancel() }
        let results = try await withThrowingTaskGroup(of: [Frame].self) { group in
            for index in 0..<40 {
                group.addTask {
                    try await Task.sleep(for: .milliseconds(10 * index))
                    let stream = try await harness.create("count to 30")
                    return try await readFrames(stream) { _ in false }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        killer.cancel()
        // On a cluster the commands go to one master: its subscriber is the one killed.
        #expect(await killer.value > 0, "the gateway's subscriber was never killed")
        for frames in results {
            #expect(frames.last?.finishReason == "stop")
            #expect(Set(frames.map(\.event.id)).count == frames.count)
            #expect(replyText(frames).contains("30"))
        }
    }

    @Test func appendsAnnounceTheirEntriesAfterThePreviousID() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let stream = try await harness.create("hi")
        let id = stream.executionID
        stream.close()
        let subscription = try await harness.redis.pubSub.subscribe(
            harness.store.keys.tail(id), kind: harness.store.keys.channelKind)
        let claim = try #require(try await harness.store.claim(id, owner: "test"))
        let written = try await harness.store.append(
            id, fence: claim.fence,
            events: [NewEvent(.text, ["text": "a\u{1f}b\n"]), NewEvent(.text, ["text": "c"], status: .running)])
        var iterator = subscription.makeAsyncIterator()
        let message = try #require(await iterator.next())
        let announcement = try #require(TailAnnouncement(message.payload))
        let stored = try await harness.store.allEvents(id)
        #expect(announcement.previousID == StreamID(stored[0].id))
        #expect(announcement.events == Array(stored[1...]))
        #expect(announcement.events.map(\.id) == written.ids)
        #expect(written.previous == stored[0].id)
        #expect(announcement.events.last?.status == "running")
    }

    /// An append whose announcement no gateway received (a PUBLISH lost while the subscriber reconnected, say).
    func appendUnannounced(_ harness: Harness, _ id: String, _ text: String) async throws -> String {
        let entry = try await harness.redis.send(
            "XADD", harness.store.keys.events(id), "*", "type", "text-delta", "data",
            #"{"text":"\#(text)","type":"text-delta"}"#, "ts", 1
        ).requireString()
        try await harness.redis.send("HSET", harness.store.keys.meta(id), "lastEventId", entry)
        return entry
    }

    @Test func anEntryWithoutAnnouncementIsNeitherLostNorReordered() async throws {
        let harness = try await Harness.start(heartbeatSeconds: 0.3, withWorker: false)
        defer { harness.stop() }
        let created = try await harness.create("hi")
        let id = created.executionID
        let first = try await readFrames(created) { $0.count == 1 }
        let claim = try #require(try await harness.store.claim(id, owner: "test"))
        let silent = try await appendUnannounced(harness, id, "silent ")
        // The next announcement does not follow the gateway's cursor: it reads the stream instead.
        try await harness.store.append(id, fence: claim.fence, events: [NewEvent(.text, ["text": "announced"])])
        var frames = first + (try await readFrames(created) { $0.count == 2 })
        #expect(frames.map(\.event.id) == [first[0].event.id, silent, frames.last?.event.id])
        #expect(replyText(frames) == "silent announced")
        // And one that is never followed by an announcement arrives with the next tick.
        let lonely = try await appendUnannounced(harness, id, " tick")
        frames += try await readFrames(created) { $0.count == 1 }
        #expect(frames.last?.event.id == lonely)
        try await harness.store.append(
            id, fence: claim.fence, events: [NewEvent(.finish, ["status": "completed"], status: .completed)])
        frames += try await readFrames(created) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        let replay = try await readFrames(try await harness.reconnect(id)) { _ in false }
        #expect(replay.map(\.event.raw) == frames.map(\.event.raw))
    }

    @Test func aFullClientQueueDropsSignalsThatTheNextSignalReveals() async throws {
        let harness = try await Harness.start(withWorker: false) { $0.http.clientQueueLength = 1 }
        defer { harness.stop() }
        let created = try await harness.create("hi")
        let id = created.executionID
        created.close()
        let tailer = Tailer(store: harness.store, clientQueue: 1, logger: Harness.quietLogger("test"))
        let feed = try await tailer.follow(id)
        defer { tailer.leave(feed) }
        let claim = try #require(try await harness.store.claim(id, owner: "test"))
        var ids: [String] = []
        for i in 0..<3 {
            ids += try await harness.store.append(
                id, fence: claim.fence, events: [NewEvent(.text, ["text": .string("\(i)")])]
            ).ids
        }
        try await Task.sleep(for: .milliseconds(200))
        var iterator = feed.signals.makeAsyncIterator()
        // The queue kept the first batch only; the next heartbeat says how far the execution really is.
        guard case .events(_, let first) = await iterator.next() else {
            Issue.record("expected the first batch")
            return
        }
        #expect(first.map(\.id) == [ids[0]])
        tailer.tick()
        guard case .heartbeat(let latest) = await iterator.next() else {
            Issue.record("expected a heartbeat")
            return
        }
        #expect(latest == StreamID(ids[2]))
    }

    /// Ticks come in slices, and a slice re-reads its executions with one XREAD: each execution's missed entry
    /// reaches that execution's clients, once, and only in the tick of its slice.
    @Test func slicedTicksReadManyExecutionsAtOnce() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let tailer = Tailer(store: harness.store, logger: Harness.quietLogger("test"))
        var feeds: [(id: String, feed: Tailer.Feed)] = []
        for _ in 0..<6 {
            let created = try await harness.create("hi")
            created.close()
            feeds.append((created.executionID, try await tailer.follow(created.executionID)))
        }
        defer { for (_, feed) in feeds { tailer.leave(feed) } }
        var missed: [String: String] = [:]
        for (id, _) in feeds { missed[id] = try await appendUnannounced(harness, id, "missed \(id)") }
        // Three slices: every execution is read by exactly one of them; after all three, each feed has its entry.
        for slice in 0..<3 { tailer.tick(slice: slice, of: 3) }
        for (id, feed) in feeds {
            var iterator = feed.signals.makeAsyncIterator()
            var received: [String] = []
            var heartbeats = 0
            while received.isEmpty, let signal = await iterator.next() {
                switch signal {
                case .heartbeat: heartbeats += 1
                case .events(_, let events): received += events.map(\.id)
                }
            }
            #expect(received == [missed[id]!], "execution \(id)")
            #expect(heartbeats == 1, "one heartbeat per execution per round of slices")
        }
    }

    @Test func aClientWhoseQueueOverflowsStillGetsEveryFrameInOrder() async throws {
        let harness = try await Harness.start { $0.http.clientQueueLength = 1 }
        defer { harness.stop() }
        let stream = try await harness.create("count to 3000")
        let frames = try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        #expect(replyText(frames) == (1...3000).map(String.init).joined(separator: " "))
        let ids = frames.compactMap { $0.event.id.flatMap(StreamID.init) }
        #expect(ids == ids.sorted() && Set(ids).count == ids.count)
    }
}
