import Foundation
import RedisKit
import TestSupport
import Testing
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
    }
}
