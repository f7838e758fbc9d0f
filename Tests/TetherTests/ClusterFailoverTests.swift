import Foundation
import RedisKit
import TestSupport
import Testing
import TetherClient
import TetherCore

/// Tether on a Redis Cluster of its own, with a replica per master, whose master is killed under a live stream.
@Suite("Redis Cluster failover", .timeLimit(.minutes(2)))
struct ClusterFailoverTests {
    @Test func aMasterKilledUnderALiveStreamIsReplacedByItsReplicaAndTheRunGoesOn() async throws {
        let cluster = try await RedisCluster(masters: 3, replicas: 1)
        let seeds = cluster.nodes.map { "127.0.0.1:\($0.port)" }.joined(separator: ",")
        let harness = try await Harness.start(tokenDelayMilliseconds: 20, leaseSeconds: 5) { config in
            config.redis.url = "redis+cluster://" + seeds
            config.redis.shards = 0
            config.redis.commandTimeoutMilliseconds = 10_000
        }
        defer { harness.stop() }
        let client = try #require(harness.redis as? RedisClusterClient)
        let stream = try await harness.create("count to 300")
        let id = stream.executionID
        var frames = try await readFrames(stream) { $0.count >= 40 }
        // The master of the execution's slot dies as abruptly as a crash; its replica is promoted (node timeout 2 s).
        let slot = ClusterSlot.of(harness.store.keys.meta(id))
        let before = try #require(try await client.refreshTopology().master(forSlot: slot))
        let node = try #require(cluster.nodes.first { $0.port == before.port })
        node.stop()
        frames += try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        // Every number once, in order: nothing lost, nothing repeated, in what this client was sent.
        #expect(replyText(frames) == (1...300).map(String.init).joined(separator: " "))
        let ids = frames.compactMap { $0.event.id }
        #expect(Set(ids).count == ids.count, "an event was sent twice")
        let after = try #require(try await client.refreshTopology().master(forSlot: slot))
        #expect(after.port != before.port, "the replica did not take the slot over")
        // The record is there on the new master, finished.
        #expect(try await harness.store.record(id)?.status == .completed)
        // What the client was sent is what the new master's log holds: streams are read through the replicas.
        #expect(Set(ids).isSubset(of: Set(try await harness.store.allEvents(id).map(\.id))))
    }

    /// Many streams at full speed while a master dies with writes its replica never got: no event any client was
    /// sent is missing from the log the promoted replica holds, and each reply still reads whole (a turn whose tail
    /// the failover lost is voided and redone, never continued past a hole).
    @Test func aMasterKilledUnderLoadLosesNoEventAClientWasSent() async throws {
        let cluster = try await RedisCluster(masters: 3, replicas: 1)
        let seeds = cluster.nodes.map { "127.0.0.1:\($0.port)" }.joined(separator: ",")
        let harness = try await Harness.start(tokenDelayMilliseconds: 2, leaseSeconds: 5) { config in
            config.redis.url = "redis+cluster://" + seeds
            config.redis.shards = 0
            config.redis.commandTimeoutMilliseconds = 10_000
        }
        defer { harness.stop() }
        let client = try #require(harness.redis as? RedisClusterClient)
        let count = 2000
        var streams: [HTTPStream] = []
        for _ in 0..<12 { streams.append(try await harness.create("count to \(count)")) }
        let before = try await client.refreshTopology()
        let victim = try #require(
            before.master(forSlot: ClusterSlot.of(harness.store.keys.meta(streams[0].executionID))))
        let replicaNode = try #require(
            before.replicas(forSlot: before.ranges.first { $0.master == victim }!.slots.lowerBound).first)
        let replica = try #require(cluster.nodes.first { $0.port == replicaNode.port })
        let onVictim = Set(
            streams.map(\.executionID).filter {
                before.master(forSlot: ClusterSlot.of(harness.store.keys.meta($0))) == victim
            })
        let results = try await withThrowingTaskGroup(of: (String, [Frame]).self) { group in
            for (index, stream) in streams.enumerated() {
                group.addTask {
                    var frames = try await readFrames(stream) { $0.count >= 200 }
                    if index == 0 {
                        // What asynchronous replication can lose, made wide enough to hit: the replica is frozen and
                        // its link cut (it cannot reconnect), the master takes writes for 300 ms that no replica
                        // has, then dies; the replica goes on, and is promoted.
                        let master = RedisClient(
                            configuration: try RedisConfiguration(url: "redis://127.0.0.1:\(victim.port)"))
                        defer { master.shutdown() }
                        replica.pause()
                        try await master.send("CLIENT", "KILL", "TYPE", "replica")
                        try await Task.sleep(for: .milliseconds(300))
                        try #require(cluster.nodes.first { $0.port == victim.port }).stop()
                        replica.resume()
                    }
                    frames += try await readFrames(stream) { _ in false }
                    return (stream.executionID, frames)
                }
            }
            var results: [(String, [Frame])] = []
            for try await result in group { results.append(result) }
            return results
        }
        let expected = (1...count).map(String.init).joined(separator: " ")
        let topology = try await client.refreshTopology()
        #expect(topology.masters.allSatisfy { $0.port != victim.port }, "the replica did not take over")
        for (id, frames) in results {
            #expect(frames.last?.finishReason == "stop", "\(id)")
            #expect(replyText(frames) == expected, "\(id)")
            let sent = frames.compactMap { $0.event.id }
            #expect(Set(sent).count == sent.count, "\(id): an event was sent twice")
            let log = Set(try await harness.store.allEvents(id).map(\.id))
            let missing = sent.filter { !log.contains($0) }
            #expect(missing.count == 0, "\(id): \(missing.count) events the client was sent are not in the log")
            if onVictim.contains(id) {
                // Its newest entries were lost: the turn was voided and redone, not continued past the hole.
                #expect(frames.contains { $0.typed?["data"]?["type"]?.stringValue == "turn-aborted" }, "\(id)")
            }
        }
        #expect(results.count == 12)
        #expect(!onVictim.isEmpty)
    }
}
