import Foundation
import TestSupport
import Testing

@testable import RedisKit

/// Redis Cluster's slots and topology: pure logic first, then checked against a real 3-master cluster (whose own
/// `CLUSTER KEYSLOT` and `MOVED` replies are the reference).
@Suite("Redis Cluster slots and topology", .timeLimit(.minutes(2)))
struct ClusterTests {
    @Test func slotsAreCRC16OfTheHashTag() {
        // The reference vector of CRC16/XMODEM, and Redis's documented slot for it.
        #expect(ClusterSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(ClusterSlot.of("123456789") == 12739)
        #expect(ClusterSlot.of("{user1000}.following") == ClusterSlot.of("{user1000}.followers"))
        #expect(ClusterSlot.of("{user1000}.following") == ClusterSlot.of("user1000"))
        // The tag rules of the cluster specification.
        #expect(String(decoding: ClusterSlot.hashTag(of: Array("foo{}{bar}".utf8)), as: UTF8.self) == "foo{}{bar}")
        #expect(String(decoding: ClusterSlot.hashTag(of: Array("foo{{bar}}zap".utf8)), as: UTF8.self) == "{bar")
        #expect(String(decoding: ClusterSlot.hashTag(of: Array("foo{bar}{zap}".utf8)), as: UTF8.self) == "bar")
        #expect(String(decoding: ClusterSlot.hashTag(of: Array("no-tag".utf8)), as: UTF8.self) == "no-tag")
        #expect(String(decoding: ClusterSlot.hashTag(of: Array("open{only".utf8)), as: UTF8.self) == "open{only")
        // Every execution key shares its execution's slot.
        let id = "exec_01M8Y2H8QT1P6CQJ4JQXZDRXTA"
        #expect(ClusterSlot.of("tether:{\(id)}:meta") == ClusterSlot.of("tether:{\(id)}:events"))
        #expect(ClusterSlot.of("tether:{\(id)}:meta") == ClusterSlot.of(id))
    }

    @Test func redirectsAreRead() {
        let moved = ClusterRedirect(RedisError(reply: "MOVED 3999 127.0.0.1:6381"))
        #expect(moved == ClusterRedirect(kind: .moved, slot: 3999, host: "127.0.0.1", port: 6381))
        #expect(ClusterRedirect(RedisError(reply: "ASK 12 ::1:7000"))?.host == "::1")
        #expect(ClusterRedirect(RedisError(reply: "ASK 12 ::1:7000"))?.kind == .ask)
        #expect(ClusterRedirect(RedisError(reply: "MOVED 16384 127.0.0.1:1")) == nil)
        #expect(ClusterRedirect(RedisError(reply: "ERR MOVED 1 a:1")) == nil)
        #expect(ClusterRedirect(RedisError(.timeout, "MOVED 1 a:1")) == nil)
    }

    @Test func aTopologyRefusesOverlapsAndNamesTheNodeThatAnswered() throws {
        let reply = RESPValue.array([
            .array([.integer(0), .integer(8191), .array([.bulkString(Array("".utf8)), .integer(7000)])]),
            .array([
                .integer(8192), .integer(16383), .array([.bulkString(Array("10.0.0.2".utf8)), .integer(7001)]),
                .array([.bulkString(Array("10.0.0.3".utf8)), .integer(7002)]),
            ]),
        ])
        let topology = try ClusterTopology(slots: reply, answeredBy: .init(host: "10.0.0.1", port: 7000))
        #expect(topology.master(forSlot: 0)?.description == "10.0.0.1:7000")
        #expect(topology.master(forSlot: 16383)?.description == "10.0.0.2:7001")
        #expect(topology.ranges[1].replicas.map(\.description) == ["10.0.0.3:7002"])
        #expect(topology.uncoveredSlots == 0)
        let overlapping = RESPValue.array([
            .array([.integer(0), .integer(10), .array([.bulkString(Array("a".utf8)), .integer(1)])]),
            .array([.integer(10), .integer(20), .array([.bulkString(Array("b".utf8)), .integer(1)])]),
        ])
        #expect(throws: RedisError.self) {
            try ClusterTopology(slots: overlapping, answeredBy: .init(host: "a", port: 1))
        }
    }

    @Test func aRealClusterAgreesOnEverySlotAndRedirectsWhereTheTopologySays() async throws {
        let cluster = try await RedisCluster(masters: 3)
        let seed = RedisClient(configuration: try RedisConfiguration(url: cluster.urls[0]))
        defer { seed.shutdown() }
        let topology = try ClusterTopology(
            slots: try await seed.send("CLUSTER", "SLOTS"),
            answeredBy: .init(host: "127.0.0.1", port: cluster.nodes[0].port))
        #expect(topology.uncoveredSlots == 0)
        #expect(topology.masters.count == 3)
        var clients: [Int: RedisClient] = [:]
        for node in cluster.nodes {
            clients[node.port] = RedisClient(configuration: try RedisConfiguration(url: node.url))
        }
        defer { for client in clients.values { client.shutdown() } }
        for index in 0..<200 {
            let key = index % 2 == 0 ? "key:\(index)" : "tether:{exec_\(index)}:meta"
            // Redis's own slot for the key.
            #expect(try await seed.send("CLUSTER", "KEYSLOT", key).int == ClusterSlot.of(key), "\(key)")
            let master = try #require(topology.master(forSlot: ClusterSlot.of(key)))
            #expect(try await clients[master.port]!.send("SET", key, "v").string == "OK")
            // Any other master redirects to the one the topology names.
            let other = try #require(topology.masters.first { $0 != master })
            do {
                _ = try await clients[other.port]!.send("GET", key)
                Issue.record("\(other) answered for \(key), which lives on \(master)")
            } catch let error as RedisError {
                #expect(
                    ClusterRedirect(error)
                        == ClusterRedirect(
                            kind: .moved, slot: ClusterSlot.of(key), host: "127.0.0.1", port: master.port))
            }
        }
    }
}
