import Synchronization
import TestSupport
import Testing

@testable import RedisKit

@Suite("Pub/sub", .timeLimit(.minutes(2)))
struct RedisPubSubTests {
    @Test func messagesReachTheirSubscribersOnly() async throws {
        let client = try RedisClient(url: RedisServer.shared)
        defer { client.shutdown() }
        let a = uniqueKey() + ":a"
        let b = uniqueKey() + ":b"
        let subA = try await client.subscriber.subscribe(a)
        let subA2 = try await client.subscriber.subscribe(a)
        let subB = try await client.subscriber.subscribe(b)
        #expect(try await client.send("PUBLISH", a, "to-a").int == 1)  // one Redis subscriber for two local ones
        #expect(try await client.send("PUBLISH", b, [0, 13, 10] as [UInt8]).int == 1)
        var iteratorA = subA.makeAsyncIterator()
        var iteratorA2 = subA2.makeAsyncIterator()
        var iteratorB = subB.makeAsyncIterator()
        #expect(await iteratorA.next()?.string == "to-a")
        #expect(await iteratorA2.next()?.string == "to-a")
        #expect(await iteratorB.next()?.payload == [0, 13, 10])
    }

    @Test func patternAndShardSubscriptions() async throws {
        let client = try RedisClient(url: RedisServer.shared)
        defer { client.shutdown() }
        let prefix = uniqueKey()
        let pattern = try await client.subscriber.subscribe(prefix + ":*", kind: .pattern)
        let shard = try await client.subscriber.subscribe(prefix + ":shard", kind: .shard)
        try await client.send("PUBLISH", prefix + ":x", "p")
        try await client.send("SPUBLISH", prefix + ":shard", "s")
        var p = pattern.makeAsyncIterator()
        var s = shard.makeAsyncIterator()
        let message = await p.next()
        #expect(message?.channel == prefix + ":x")
        #expect(message?.pattern == prefix + ":*")
        #expect(message?.string == "p")
        #expect(await s.next()?.string == "s")
    }

    @Test func unsubscribeAfterTheLastLocalSubscriberLeaves() async throws {
        let client = try RedisClient(url: RedisServer.shared)
        defer { client.shutdown() }
        let channel = uniqueKey()
        let first = try await client.subscriber.subscribe(channel)
        let second = try await client.subscriber.subscribe(channel)
        @Sendable func numsub() async throws -> Int? {
            try await client.send("PUBSUB", "NUMSUB", channel).array?[1].int
        }
        first.cancel()
        try await Task.sleep(for: .milliseconds(50))
        #expect(try await numsub() == 1)
        second.cancel()
        #expect(try await eventually { try await numsub() == 0 })
        #expect(client.subscriber.subscribedCount == 0)
        // Subscribing again works.
        let third = try await client.subscriber.subscribe(channel)
        try await client.send("PUBLISH", channel, "again")
        var iterator = third.makeAsyncIterator()
        #expect(await iterator.next()?.string == "again")
    }

    @Test func aThousandChannelsOnOneConnection() async throws {
        let client = try RedisClient(url: RedisServer.shared)
        defer { client.shutdown() }
        let prefix = uniqueKey()
        let subscriptions = try await withThrowingTaskGroup(of: (Int, RedisSubscription).self) { group in
            for i in 0..<1000 {
                group.addTask { (i, try await client.subscriber.subscribe("\(prefix):\(i)")) }
            }
            var all: [Int: RedisSubscription] = [:]
            for try await (i, subscription) in group { all[i] = subscription }
            return all
        }
        #expect(client.subscriber.subscribedCount == 1000)
        let channels = try await client.send("PUBSUB", "CHANNELS", prefix + ":*").requireArray()
        #expect(channels.count == 1000)
        // One pub/sub connection holds them all.
        let list = try await client.send("CLIENT", "LIST").requireString()
        #expect(list.split(separator: "\n").filter { $0.contains(" sub=1000 ") }.count == 1)
        try await client.send(batch: (0..<1000).map { RedisCommand("PUBLISH", "\(prefix):\($0)", "m\($0)") })
        for i in [0, 1, 499, 998, 999] {
            var iterator = subscriptions[i]!.makeAsyncIterator()
            #expect(await iterator.next()?.string == "m\(i)")
        }
    }
}
