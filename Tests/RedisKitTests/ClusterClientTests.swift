import Foundation
import Synchronization
import TestSupport
import Testing

@testable import RedisKit

/// The cluster client against a real 3-master cluster: routing by slot, scripts loaded per node, a slot migrated
/// under it (`ASK` while its keys move, `MOVED` once it has), and a command over two slots refused.
@Suite("Redis Cluster client", .serialized, .timeLimit(.minutes(2)))
struct ClusterClientTests {
    static func client(_ cluster: RedisCluster) throws -> RedisClusterClient {
        RedisClusterClient(seeds: [try RedisConfiguration(url: cluster.urls[0])])
    }

    @Test func commandsAndScriptsGoToTheMasterOfTheirSlot() async throws {
        let cluster = try await RedisCluster(masters: 3)
        let redis = try Self.client(cluster)
        defer { redis.shutdown() }
        for index in 0..<300 {
            #expect(try await redis.send("SET", "key:\(index)", "v\(index)").string == "OK")
        }
        for index in 0..<300 {
            #expect(try await redis.send("GET", "key:\(index)").string == "v\(index)")
        }
        // The keys landed on every master.
        var counts: [Int] = []
        for node in cluster.nodes {
            let direct = RedisClient(configuration: try RedisConfiguration(url: node.url))
            counts.append(try await direct.send("DBSIZE").int ?? 0)
            direct.shutdown()
        }
        #expect(counts.count == 3 && counts.allSatisfy { $0 > 50 } && counts.reduce(0, +) == 300, "\(counts)")
        // A script over one execution's keys runs where they live, loaded there on first use, on every master.
        let script = RedisScript(
            "redis.call('HSET', KEYS[1], 'n', ARGV[1]); return redis.call('XADD', KEYS[2], '*', 'n', ARGV[1])")
        for index in 0..<30 {
            let id = "exec_\(index)"
            let reply = try await redis.run(
                script, keys: ["tether:{\(id)}:meta", "tether:{\(id)}:events"], arguments: [index])
            #expect(reply.string?.contains("-") == true)
            #expect(try await redis.send("HGET", "tether:{\(id)}:meta", "n").string == String(index))
        }
        // Keys over two slots never leave the process.
        await #expect(throws: RedisError.self) { try await redis.send("MGET", "{a}1", "{b}2") }
        // A command without keys goes to some master.
        #expect(try await redis.send("PING").string == "PONG")
    }

    @Test func aSlotMigratedUnderTheClientIsFollowedThroughAskThenMoved() async throws {
        let cluster = try await RedisCluster(masters: 3)
        let redis = try Self.client(cluster)
        defer { redis.shutdown() }
        let key = "migrating:key"
        #expect(try await redis.send("SET", key, "before").string == "OK")
        let topology = try #require(redis.topology)
        let slot = ClusterSlot.of(key)
        let source = try #require(topology.master(forSlot: slot))
        let target = try #require(topology.masters.first { $0 != source })
        func direct(_ node: ClusterTopology.Node) throws -> RedisClient {
            RedisClient(configuration: try RedisConfiguration(url: "redis://\(node.host):\(node.port)"))
        }
        let from = try direct(source)
        let to = try direct(target)
        defer {
            from.shutdown()
            to.shutdown()
        }
        let fromID = try await from.send("CLUSTER", "MYID").requireString()
        let toID = try await to.send("CLUSTER", "MYID").requireString()
        // Migrating: the key moves to the target; the source answers ASK for it.
        _ = try await to.send("CLUSTER", "SETSLOT", slot, "IMPORTING", fromID)
        _ = try await from.send("CLUSTER", "SETSLOT", slot, "MIGRATING", toID)
        _ = try await from.send("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", key)
        do {
            _ = try await from.send("GET", key)
            Issue.record("the source still answered for a migrated key")
        } catch let error as RedisError {
            #expect(ClusterRedirect(error)?.kind == .ask)
        }
        #expect(try await redis.send("GET", key).string == "before", "followed the ASK")
        #expect(try await redis.send("SET", key, "during").string == "OK")
        #expect(redis.topology?.master(forSlot: slot) == source, "an ASK does not change the topology")
        // Migrated: every master gives the slot to the target; the client's next command is MOVED and follows.
        for node in topology.masters {
            let client = try direct(node)
            _ = try await client.send("CLUSTER", "SETSLOT", slot, "NODE", toID)
            client.shutdown()
        }
        #expect(try await redis.send("GET", key).string == "during", "followed the MOVED")
        #expect(redis.topology?.master(forSlot: slot)?.port == target.port)
    }
    @Test func shardChannelsAreSubscribedOnTheirMastersAndEachMessageArrivesOnce() async throws {
        let cluster = try await RedisCluster(masters: 3)
        let redis = try Self.client(cluster)
        defer { redis.shutdown() }
        let channels = (0..<30).map { "tail:{exec_\($0)}" }
        let received = Mutex<[String: [String]]>([:])
        var handles: [RedisSubscriptionHandle] = []
        for channel in channels {
            handles.append(
                try await redis.pubSub.subscribe(channel, kind: .shard) { message in
                    received.withLock { $0[message.channel, default: []].append(message.string) }
                })
        }
        defer { for handle in handles { handle.cancel() } }
        #expect(redis.pubSub.subscribedCount == 30)
        // One pub/sub connection per master, each holding the channels of its own slots.
        let topology = try await redis.refreshTopology()
        var perMaster: [Int] = []
        for master in topology.masters {
            let direct = RedisClient(
                configuration: try RedisConfiguration(url: "redis://\(master.host):\(master.port)"))
            let mine = channels.filter { topology.master(forSlot: ClusterSlot.of($0)) == master }
            let counts = try await direct.send(
                batch: mine.map { RedisCommand("PUBSUB", "SHARDNUMSUB", $0) })
            perMaster.append(counts.filter { $0.array?.last?.int == 1 }.count)
            #expect(perMaster.last == mine.count, "\(master): \(counts)")
            direct.shutdown()
        }
        #expect(perMaster.count == 3 && perMaster.allSatisfy { $0 > 0 }, "\(perMaster)")
        for channel in channels { #expect(try await redis.send("SPUBLISH", channel, "m-\(channel)").int == 1) }
        #expect(try await eventually(5) { received.withLock { $0.count == 30 } })
        let all = received.withLock { $0 }
        #expect(channels.allSatisfy { all[$0] == ["m-\($0)"] }, "\(all)")
    }

    @Test func replicaReadsGoToTheReplicasOfTheSlotsMasterAndSubscribeThere() async throws {
        let cluster = try await RedisCluster(masters: 3, replicas: 1)
        let redis = try Self.client(cluster)
        defer { redis.shutdown() }
        let reads = try #require(redis.replicaReads as? RedisClusterClient)
        #expect(reads.readFrom == .replicas)
        let keys = (0..<30).map { "{exec_\($0)}:events" }
        for key in keys { try await redis.send("XADD", key, "*", "n", key) }
        let topology = try await redis.refreshTopology()
        // Each read is answered by a replica (a write sent the same way is refused there), with what the master wrote.
        for key in keys {
            let replica = try #require(topology.replicas(forSlot: ClusterSlot.of(key)).first)
            #expect(try await reads.node(for: ClusterSlot.of(key)) == replica)
            #expect(try await eventually(5) { try await reads.send("XRANGE", key, "-", "+").array?.count == 1 })
        }
        await #expect(throws: RedisError.self) { try await reads.send("SET", keys[0], "x") }
        // A shard channel is subscribed on the replica, and a message published on the master reaches it.
        let channel = "tail:{exec_7}"
        let received = Mutex<[String]>([])
        let handle = try await reads.pubSub.subscribe(channel, kind: .shard) { message in
            received.withLock { $0.append(message.string) }
        }
        defer { handle.cancel() }
        let replica = try #require(topology.replicas(forSlot: ClusterSlot.of(channel)).first)
        let direct = RedisClient(configuration: try RedisConfiguration(url: "redis://127.0.0.1:\(replica.port)"))
        defer { direct.shutdown() }
        #expect(try await direct.send("PUBSUB", "SHARDNUMSUB", channel).array?.last?.int == 1)
        try await redis.send("SPUBLISH", channel, "hello")
        #expect(try await eventually(5) { received.withLock { $0 == ["hello"] } })
    }

    @Test func replicaReadsGoToTheMasterWhenTheReplicaIsGone() async throws {
        let cluster = try await RedisCluster(masters: 3, replicas: 1)
        let redis = try Self.client(cluster)
        defer { redis.shutdown() }
        let reads = try #require(redis.replicaReads as? RedisClusterClient)
        let key = "{exec_1}:events"
        try await redis.send("XADD", key, "*", "n", "1")
        let topology = try await reads.refreshTopology()
        let replica = try #require(topology.replicas(forSlot: ClusterSlot.of(key)).first)
        #expect(try await eventually(5) { try await reads.send("XLEN", key).int == 1 })
        try #require(cluster.nodes.first { $0.port == replica.port }).stop()
        // The topology still names the dead replica: the read fails over to the master at once.
        #expect(try await reads.send("XLEN", key).int == 1)
    }
}
