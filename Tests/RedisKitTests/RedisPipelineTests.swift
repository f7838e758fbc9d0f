import NIOCore
import TestSupport
import Testing

@testable import RedisKit

@Suite("Pipelining, pool and blocking commands", .timeLimit(.minutes(2)))
struct RedisPipelineTests {
    @Test func tenThousandConcurrentCommandsOnOneConnection() async throws {
        let client = try RedisClient(url: RedisServer.shared)
        defer { client.shutdown() }
        let key = uniqueKey()
        let connection = try await client.dedicatedConnection()
        defer { connection.close() }
        let replies = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<10_000 {
                group.addTask { try await connection.send("INCR", key).requireInt() }
            }
            var all: [Int] = []
            for try await reply in group { all.append(reply) }
            return all
        }
        // Every command got its own reply: each INCR result exactly once.
        #expect(Set(replies) == Set(1...10_000))
        #expect(try await connection.send("GET", key).int == 10_000)
    }

    @Test func tenThousandCommandsInOneBatch() async throws {
        let client = try RedisClient(url: RedisServer.shared)
        defer { client.shutdown() }
        let key = uniqueKey()
        let commands = (0..<10_000).map { RedisCommand("RPUSH", key, $0) }
        let replies = try await client.send(batch: commands)
        #expect(replies == (1...10_000).map { RESPValue.integer(Int64($0)) })
        let stored = try await client.send("LRANGE", key, 0, -1).requireArray()
        #expect(stored.map { $0.int } == (0..<10_000).map { $0 })
    }

    @Test func poolQueuesCallersWhenExhaustedAndHandsConnectionsOn() async throws {
        var configuration = try RedisConfiguration(url: RedisServer.shared)
        configuration.poolSize = 2
        let client = RedisClient(configuration: configuration)
        defer { client.shutdown() }
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        // Two holders take both connections and wait for the gate.
        let holders = (0..<2).map { _ in
            Task {
                try await client.withConnection { connection in
                    try await connection.send("PING")
                    for await _ in gate { break }
                }
            }
        }
        #expect(try await eventually { client.pooledConnectionCount == 2 })
        let queued = Task { try await client.send("PING").string }
        #expect(try await eventually { client.waitingForConnectionCount == 1 })
        #expect(client.pooledConnectionCount == 2)
        open.yield()
        open.yield()
        open.finish()
        for holder in holders { try await holder.value }
        #expect(try await queued.value == "PONG")
        #expect(client.waitingForConnectionCount == 0)
        #expect(client.pooledConnectionCount == 2)
    }

    @Test func concurrentCommandsShareConnectionsWithinTheBound() async throws {
        var configuration = try RedisConfiguration(url: RedisServer.shared)
        configuration.poolSize = 2
        configuration.clientName = "shared-" + uniqueKey().replacingOccurrences(of: ":", with: "-")
        let client = RedisClient(configuration: configuration)
        let admin = try RedisClient(url: RedisServer.shared)
        defer {
            client.shutdown()
            admin.shutdown()
        }
        let key = uniqueKey()
        let results = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<2000 { group.addTask { try await client.send("INCR", key).requireInt() } }
            var all: [Int] = []
            for try await value in group { all.append(value) }
            return all
        }
        #expect(Set(results) == Set(1...2000))
        #expect(client.pooledConnectionCount <= 2)
        let list = try await admin.send("CLIENT", "LIST").requireString()
        #expect(list.split(separator: "\n").filter { $0.contains("name=\(configuration.clientName!) ") }.count <= 2)
        // An exclusive lease still works next to shared use.
        try await client.withConnection { connection in
            try await connection.send("MULTI")
            try await connection.send("INCR", key)
            #expect(try await connection.send("EXEC") == [2001])
        }
    }

    @Test func cancelledWaiterLeavesTheLineAndLeaksNothing() async throws {
        var configuration = try RedisConfiguration(url: RedisServer.shared)
        configuration.poolSize = 1
        let client = RedisClient(configuration: configuration)
        defer { client.shutdown() }
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        let holder = Task {
            try await client.withConnection { connection in
                try await connection.send("PING")
                for await _ in gate { break }
            }
        }
        #expect(try await eventually { client.pooledConnectionCount == 1 })
        let waiters = (0..<20).map { _ in Task { try await client.send("PING") } }
        #expect(try await eventually { client.waitingForConnectionCount == 20 })
        for waiter in waiters { waiter.cancel() }
        for waiter in waiters {
            await #expect(throws: CancellationError.self) { try await waiter.value }
        }
        #expect(client.waitingForConnectionCount == 0)
        open.finish()
        try await holder.value
        // The one connection is back and usable; no other was opened.
        #expect(try await client.send("PING").string == "PONG")
        #expect(client.pooledConnectionCount == 1)
    }

    @Test func cancellingABlockedXREADFreesItPromptly() async throws {
        let client = try RedisClient(url: RedisServer.shared)
        let admin = try RedisClient(url: RedisServer.shared)
        defer {
            client.shutdown()
            admin.shutdown()
        }
        let key = uniqueKey()
        let name = "blocked-" + key.replacingOccurrences(of: ":", with: "-")
        var configuration = client.configuration
        configuration.clientName = name
        let connection = try await RedisConnection.connect(configuration)
        let blocked = Task {
            try await connection.sendBlocking(RedisCommand("XREAD", "BLOCK", 0, "STREAMS", key, "$"))
        }
        @Sendable func blockedClients() async throws -> Int {
            let list = try await admin.send("CLIENT", "LIST").requireString()
            return list.split(separator: "\n").filter { $0.contains("name=\(name) ") && $0.contains("cmd=xread") }.count
        }
        #expect(try await eventually { try await blockedClients() == 1 })
        let start = ContinuousClock.now
        blocked.cancel()
        await #expect(throws: CancellationError.self) { try await blocked.value }
        #expect(ContinuousClock.now - start < .seconds(1))
        // The server no longer holds the blocked client.
        #expect(try await eventually { try await blockedClients() == 0 })
        #expect(!connection.isActive)
    }

    @Test func blockingCommandReturnsWhenDataArrives() async throws {
        let client = try RedisClient(url: RedisServer.shared)
        defer { client.shutdown() }
        let key = uniqueKey()
        let reader = Task {
            try await client.sendBlocking(RedisCommand("XREAD", "BLOCK", 5000, "STREAMS", key, "0-0"))
        }
        try await Task.sleep(for: .milliseconds(50))
        let id = try await client.send("XADD", key, "*", "type", "text").requireString()
        let reply = try await reader.value
        // [[key, [[id, [field, value]]]]]
        let entry = try #require(reply.array?.first?.array?[1].array?.first?.array)
        #expect(entry[0].string == id)
        #expect(entry[1] == ["type", "text"])
    }

    @Test func scriptsLoadOnNOSCRIPT() async throws {
        // A server of its own: SCRIPT FLUSH on the shared one would race other tests' scripts.
        let server = try RedisServer()
        let client = try RedisClient(url: server.url)
        defer { client.shutdown() }
        let key = uniqueKey()
        let script = RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        #expect(script.sha1.count == 40)
        try await client.send("SCRIPT", "FLUSH")
        #expect(try await client.run(script, keys: [key], arguments: [5]).int == 5)
        #expect(try await client.run(script, keys: [key], arguments: [2]).int == 7)
        #expect(try await client.send("SCRIPT", "EXISTS", script.sha1) == [1])
    }

    @Test func commandTimeoutFailsFastAndTheClientRecovers() async throws {
        let server = try RedisServer()
        var configuration = try RedisConfiguration(url: server.url)
        configuration.commandTimeout = .seconds(1)
        let client = RedisClient(configuration: configuration)
        let admin = try RedisClient(url: server.url)
        defer {
            client.shutdown()
            admin.shutdown()
        }
        try await client.send("PING")
        // Paused for 5 s: a reply before then can only be the timeout.
        try await admin.send("CLIENT", "PAUSE", 5000, "ALL")
        let start = ContinuousClock.now
        await #expect {
            try await client.send("PING")
        } throws: { error in
            (error as? RedisError)?.code == .timeout
        }
        #expect(ContinuousClock.now - start < .seconds(4))
        try await admin.send("CLIENT", "UNPAUSE")
        #expect(try await client.send("PING").string == "PONG")
    }
}

@Suite("Commands sent without suspending", .timeLimit(.minutes(2)))
struct RedisSubmitTests {
    @Test func submitBeforeAnyConnectionOpensOneAndLaterOnesPipeline() async throws {
        let client = try RedisClient(url: RedisServer.shared)
        defer { client.shutdown() }
        let key = uniqueKey()
        // No connection yet: the first submit opens one (in a task).
        #expect(try await client.submit(RedisCommand("INCR", key)).get().int == 1)
        // From event-loop callbacks, 2,000 at once: every command gets its own reply.
        let futures = (0..<2000).map { _ in client.submit(RedisCommand("INCR", key)) }
        var replies: [Int] = []
        for future in futures { replies.append(try #require(try await future.get().int)) }
        #expect(Set(replies) == Set(2...2001))
        #expect(client.pooledConnectionCount <= client.configuration.poolSize)
    }

    @Test func submitReportsErrorRepliesAndLoadsUnknownScripts() async throws {
        let client = try RedisClient(url: RedisServer.shared)
        defer { client.shutdown() }
        let key = uniqueKey()
        try await client.send("SET", key, "text")
        await #expect {
            try await client.submit(RedisCommand("INCR", key)).get()
        } throws: { error in
            (error as? RedisError)?.code == .serverError
        }
        // A script no server has seen (a unique comment): the first EVALSHA gets NOSCRIPT.
        let script = RedisScript("return redis.call('STRLEN', KEYS[1]) + tonumber(ARGV[1]) -- \(uniqueKey())")
        #expect(try await client.send("SCRIPT", "EXISTS", script.sha1) == [0])
        #expect(try await client.submit(script, keys: [key], arguments: [1]).get().int == 5)
        #expect(try await client.submit(script, keys: [key], arguments: [2]).get().int == 6)
    }
}
