import Foundation
import TestSupport
import Testing

@testable import RedisKit

/// A command knows its keys (what a cluster client routes on), as Redis itself says: `COMMAND GETKEYS` on a real
/// server is the reference.
@Suite("The keys of a command", .timeLimit(.minutes(1)))
struct CommandKeysTests {
    static let commands: [[String]] = [
        ["GET", "k"], ["SET", "k", "v", "PX", "100"], ["HSET", "h", "f", "v", "g", "w"], ["HMGET", "h", "a", "b"],
        ["HGETALL", "h"], ["HDEL", "h", "f"], ["HINCRBY", "h", "f", "1"], ["DEL", "a", "b", "c"], ["EXISTS", "a", "b"],
        ["MSET", "a", "1", "b", "2"], ["MGET", "a", "b"], ["EXPIRE", "k", "10"],
        ["XADD", "s", "MAXLEN", "~", "10", "*", "f", "v"],
        ["XRANGE", "s", "-", "+", "COUNT", "5"], ["XREVRANGE", "s", "+", "-"], ["XLEN", "s"],
        ["XREAD", "COUNT", "10", "STREAMS", "s1", "s2", "0", "0"],
        ["XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "BLOCK", "0", "STREAMS", "s1", "s2", ">", ">"],
        ["EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "2", "k1", "k2", "a1"], ["EVAL", "return 1", "1", "k"],
        ["XINFO", "STREAM", "s"], ["XINFO", "GROUPS", "s"], ["XGROUP", "CREATE", "s", "g", "0", "MKSTREAM"],
        ["XAUTOCLAIM", "s", "g", "c", "0", "0-0"], ["XCLAIM", "s", "g", "c", "0", "1-0", "JUSTID"],
        ["XPENDING", "s", "g"],
        ["XACK", "s", "g", "1-0"], ["XDEL", "s", "1-0"], ["ZADD", "z", "1", "m"], ["ZRANGE", "z", "0", "-1"],
        ["ZSCORE", "z", "m"], ["ZCARD", "z"], ["ZREM", "z", "m"], ["SADD", "s", "m"], ["SMEMBERS", "s"],
        ["LRANGE", "l", "0", "-1"], ["RPUSH", "l", "a"], ["LTRIM", "l", "0", "9"], ["HKEYS", "h"],
    ]

    @Test func theKeysAreTheOnesRedisNames() async throws {
        let redis = RedisClient(configuration: try RedisConfiguration(url: RedisServer.shared))
        defer { redis.shutdown() }
        for words in Self.commands {
            let command = RedisCommand(words[0], arguments: words.dropFirst().map { $0 as any RedisArgument })
            let reference = try await redis.send(
                RedisCommand("COMMAND", arguments: ["GETKEYS"] + words.map { $0 as any RedisArgument }))
            let keys = try #require(command.keys, "\(words)").map { String(decoding: $0, as: UTF8.self) }
            #expect(keys == (reference.array ?? []).compactMap(\.string), "\(words.joined(separator: " "))")
        }
        // Commands with no keys: Redis says so with an error, or an empty list.
        for words in [["PING"], ["INFO", "memory"], ["SCRIPT", "LOAD", "return 1"], ["EVAL", "return 1", "0"]] {
            let command = RedisCommand(words[0], arguments: words.dropFirst().map { $0 as any RedisArgument })
            #expect(command.keys?.isEmpty == true, "\(words)")
            let reference = try? await redis.send(
                RedisCommand("COMMAND", arguments: ["GETKEYS"] + words.map { $0 as any RedisArgument }))
            #expect(reference == nil || reference?.array?.isEmpty == true, "\(words): \(String(describing: reference))")
        }
    }

    @Test func aCommandOverSeveralSlotsIsRefusedBeforeItIsSent() throws {
        #expect(
            try RedisCommand("DEL", "tether:{exec_A}:meta", "tether:{exec_A}:events").slot() == ClusterSlot.of("exec_A")
        )
        #expect(try RedisCommand("PING").slot() == nil)
        #expect(throws: RedisError.self) { try RedisCommand("XREAD", "STREAMS", "{a}1", "{b}2", "0", "0").slot() }
        #expect(throws: RedisError.self) { try RedisCommand("EVALSHA", "x", "2", "{a}k", "{b}k").slot() }
        // A command whose keys RedisKit does not know cannot be routed either.
        #expect(throws: RedisError.self) { try RedisCommand("GEOADD", "k", "1", "2", "m").slot() }
        do {
            _ = try RedisCommand("MGET", "{a}1", "{b}2").slot()
        } catch {
            #expect(error.code == .crossSlot)
            #expect(error.message.contains("{a}1") && error.message.contains("{b}2"))
        }
    }
}
