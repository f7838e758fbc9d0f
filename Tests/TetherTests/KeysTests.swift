import RedisKit
import Testing
import TetherCore

/// The key layouts (pure logic: no Redis).
@Suite("Key layouts")
struct KeysTests {
    @Test func theSingleRedisLayoutKeepsItsNames() {
        let keys = Keys(prefix: "tether")
        #expect(!keys.isSharded && keys.shardCount == 1)
        #expect(keys.meta("exec_A") == "tether:{exec_A}:meta")
        #expect(keys.jobs(for: "exec_A") == "tether:jobs")
        #expect(keys.deadlines(shard: 0) == "tether:deadlines")
        #expect(keys.waiting(for: "exec_A") == "tether:waiting")
        #expect(keys.conversation(tenant: "acme", conversationID: "c1") == "tether:{conv:acme:c1}:messages")
        #expect(keys.jobsBell(shard: 0) == "")
        #expect(keys.channelKind == .channel)
    }

    @Test func aShardedExecutionSharesOneSlotWithItsConversationAndItsShard() {
        let keys = Keys(prefix: "tether", shards: 16)
        #expect(keys.isSharded && keys.shardCount == 16 && keys.channelKind == .shard)
        for conversation in ["c1", "c2", "conv_01J", "x"] {
            let id = keys.newExecutionID(tenant: "acme", conversationID: conversation)
            let shard = keys.shard(of: id)
            #expect(shard == keys.shard(tenant: "acme", conversationID: conversation))
            let slot = ClusterSlot.of(keys.meta(id))
            let together = [
                keys.events(id), keys.approvals(id), keys.checkpoint(id), keys.tail(id), keys.control(id),
                keys.jobs(for: id), keys.deadlines(for: id), keys.waiting(for: id), keys.jobsBell(shard: shard),
                keys.conversation(tenant: "acme", conversationID: conversation),
                keys.conversationState(tenant: "acme", conversationID: conversation),
            ]
            #expect(together.allSatisfy { ClusterSlot.of($0) == slot }, "\(together)")
        }
    }

    @Test func shardsSpreadEvenlyOverTheSlotRanges() {
        for count in [1, 3, 16, 64] {
            let keys = Keys(prefix: "tether", shards: count)
            let slots = keys.shards.map { ClusterSlot.of("{\(keys.shardTag($0))}") }
            #expect(Set(slots).count == count)
            let width = Double(ClusterSlot.count) / Double(count)
            for (shard, slot) in slots.enumerated() {
                #expect(Int(Double(slot) / width) == shard, "shard \(shard) of \(count) at slot \(slot)")
            }
        }
        // Three masters as redis-cli --cluster create splits them hold 5, 6 and 5 of 16 shards.
        let keys = Keys(prefix: "tether", shards: 16)
        let masters = keys.shards.map { shard -> Int in
            let slot = ClusterSlot.of("{\(keys.shardTag(shard))}")
            return slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2
        }
        #expect([0, 1, 2].map { master in masters.filter { $0 == master }.count } == [5, 6, 5])
    }
}
