import TestSupport
import Testing

@testable import RedisKit

@Suite("Replies and arguments", .timeLimit(.minutes(2)))
struct RedisValueTests {
    let client: RedisClient

    init() throws {
        client = try RedisClient(url: RedisServer.shared)
    }

    @Test func statusIntegerBulkAndNull() async throws {
        let key = uniqueKey()
        #expect(try await client.send("SET", key, "hello") == .simpleString("OK"))
        #expect(try await client.send("GET", key) == .bulkString(Array("hello".utf8)))
        #expect(try await client.send("GET", key + ":missing") == .null)
        #expect(try await client.send("INCR", key + ":n") == .integer(1))
        #expect(try await client.send("INCRBY", key + ":n", Int64(-5)).int == -4)
        try await client.send("SET", key, "")
        #expect(try await client.send("GET", key) == .bulkString([]))
        #expect(try await client.send("PING") == .simpleString("PONG"))
    }

    @Test func emptyAndNullArrays() async throws {
        let key = uniqueKey()
        #expect(try await client.send("LRANGE", key, 0, -1) == .array([]))
        // BLPOP that times out answers a null array.
        #expect(try await client.sendBlocking(RedisCommand("BLPOP", key, "0.01")) == .null)
    }

    @Test func nestedArraysAndNestedErrors() async throws {
        let reply = try await client.send(
            "EVAL", "return {1, 'two', {3, {'four', {}}}, redis.error_reply('INNER oops')}", 0)
        #expect(reply == [1, "two", [3, ["four", []]], .error("INNER oops")])
        #expect(reply.array?[3].errorMessage == "INNER oops")
    }

    @Test func binarySafeArgumentsAndReplies() async throws {
        let key = uniqueKey()
        let value: [UInt8] = Array(0...255) + Array("\r\n$3\r\n*1\r\n\0".utf8)
        try await client.send("SET", key, value)
        #expect(try await client.send("GET", key) == .bulkString(value))
        #expect(try await client.send("STRLEN", key).int == value.count)
        let binaryKey: [UInt8] = [0, 13, 10, 255] + Array(key.utf8)
        try await client.send("SET", binaryKey, "x")
        #expect(try await client.send("EXISTS", binaryKey) == 1)
        try await client.send("DEL", binaryKey)
    }

    @Test func errorReplyIsThrownAndConnectionStaysUsable() async throws {
        let key = uniqueKey()
        try await client.send("SET", key, "text")
        try await client.withConnection { (connection: RedisConnection) async throws -> Void in
            await #expect {
                try await connection.send("LPUSH", key, "x")
            } throws: { error in
                guard let error = error as? RedisError else { return false }
                return error.code == .serverError && error.message.hasPrefix("WRONGTYPE")
                    && error.serverErrorPrefix == "WRONGTYPE"
            }
            #expect(try await connection.send("GET", key).string == "text")
        }
        await #expect(throws: RedisError.self) { try await client.send("NOSUCHCOMMAND") }
        #expect(try await client.send("PING").string == "PONG")
    }

    @Test func batchKeepsErrorsInPlace() async throws {
        let key = uniqueKey()
        let replies = try await client.send(batch: [
            RedisCommand("SET", key, "1"), RedisCommand("LPUSH", key, "x"), RedisCommand("INCR", key),
        ])
        #expect(replies.count == 3)
        #expect(replies[0] == .simpleString("OK"))
        #expect(replies[1].errorMessage?.hasPrefix("WRONGTYPE") == true)
        #expect(replies[2] == .integer(2))
    }

    @Test func repliesNestedDeeperThanHiredisAllowsAreAProtocolErrorAndTheClientRecovers() async throws {
        // hiredis 0.14.1 accepts 7 levels of nesting; 9 is refused.
        await #expect {
            try await client.send("EVAL", "return {{{{{{{{{1}}}}}}}}}", 0)
        } throws: { error in
            (error as? RedisError)?.code == .protocolError
        }
        #expect(try await client.send("EVAL", "return {{{{{{1}}}}}}", 0) == [[[[[[1]]]]]])
    }

    @Test func typedAccessors() throws {
        let hash: RESPValue = ["a", "1", "b", "2"]
        #expect(hash.stringDictionary == ["a": "1", "b": "2"])
        #expect(RESPValue.bulkString(Array("42".utf8)).int == 42)
        #expect(throws: RedisError.self) { try RESPValue.integer(1).requireString() }
        #expect(throws: RedisError.self) { try RESPValue.error("ERR x").throwIfError() }
        #expect(try RESPValue.array([]).requireArray().isEmpty)
    }

    @Test func commandRendering() {
        let command = RedisCommand("xadd", "k", "*", 12, 1.5)
        #expect(command.name == "XADD")
        #expect(command.count == 5)
        #expect(
            command.arguments == [
                Array("xadd".utf8), [UInt8(ascii: "k")], [UInt8(ascii: "*")], Array("12".utf8), Array("1.5".utf8),
            ])
        #expect(command.description == "xadd k * 12 1.5")
    }
}
