import Foundation
import RedisKit
import TestSupport
import Testing
import TetherClient
import TetherCore

@testable import TetherGateway

@Suite("Idempotency keys and API keys", .timeLimit(.minutes(2)))
struct IdempotencyAndKeyTests {
    static let body = #"{"messages":[{"role":"user","content":"hi"}]}"#

    func post(_ harness: Harness, token: String, key: String, body: String = Self.body) async throws -> HTTPStream {
        try await harness.http.open(
            .POST, "/run/api/executions",
            headers: harness.auth(token) + [("Content-Type", "application/json"), ("Idempotency-Key", key)],
            body: Array(body.utf8))
    }

    /// A key stored in Redis as an earlier version could make it: any tenant and agent text, `:` included.
    func storedKey(_ harness: Harness, tenant: String, agent: String) async throws -> String {
        let keys = APIKeys(redis: harness.redis, keys: harness.store.keys, configured: [])
        let idSecret = try #require(try await keys.idSecret())
        let id = APIKeys.issuedID(random: Identifiers.token(12), secret: idSecret)
        let secret = Identifiers.token(32)
        try await harness.redis.send(
            "HSET", harness.store.keys.apiKey(id), "tenant", tenant, "agent", agent, "secretSha256",
            APIKeys.digest(secret))
        return "tk_\(id)_\(secret)"
    }

    @Test func tenantsWhoseNamesJoinAlikeNeverShareAnIdempotencyKey() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        // "a:b" + "demo" and "a" + "b:demo" once joined into the same idempotency key.
        let first = try await storedKey(harness, tenant: "a:b", agent: "demo")
        let second = try await storedKey(harness, tenant: "a", agent: "b:demo")
        let one = try await post(harness, token: first, key: "collide-1")
        #expect(one.status == 200)
        _ = try await readFrames(one) { _ in false }
        let two = try await post(harness, token: second, key: "collide-1")
        #expect(two.status == 200)
        #expect(two.headers["idempotent-replayed"] == nil)
        #expect(two.executionID != one.executionID)
        // No worker runs an agent "b:demo": the execution fails, but it is its own.
        let frames = try await readFrames(two) { _ in false }
        #expect(frames.last?.finishReason == "error")
        #expect(frames.allSatisfy { $0.chunk["id"]?.stringValue == two.executionID })
        // Each tenant's own retry replays its own execution only.
        let again = try await post(harness, token: second, key: "collide-1")
        #expect(again.headers["idempotent-replayed"] == "true")
        #expect(again.executionID == two.executionID)
        again.close()
    }

    @Test func theSameKeyWithAnotherBodyIs422AndTheSameBodyReplays() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let first = try await post(harness, token: harness.token, key: "order-42")
        #expect(first.status == 200)
        _ = try await readFrames(first) { _ in false }
        // The same request, other whitespace and member order: replayed.
        let same = try await post(
            harness, token: harness.token, key: "order-42",
            body: #"{ "messages" : [ {"content":"hi", "role":"user"} ] }"#)
        #expect(same.headers["idempotent-replayed"] == "true")
        #expect(same.executionID == first.executionID)
        same.close()
        let other = try await harness.http.send(
            .POST, "/run/api/executions",
            headers: harness.auth() + [("Content-Type", "application/json"), ("Idempotency-Key", "order-42")],
            body: Array(#"{"messages":[{"role":"user","content":"something else"}]}"#.utf8))
        #expect(other.status == 422)
        #expect(try JSON.parse(other.body)["code"]?.stringValue == "idempotency_key_reused")
        #expect(other.headers["x-workflow-run-id"] == nil)
    }

    /// The sharded layout keeps the idempotency record apart from the execution (another slot): a reservation whose
    /// execution never appeared is taken over once stale, and one made for a create that made nothing is released.
    @Test func shardedReservationsAreTakenOverWhenStaleAndReleasedWhenNothingWasCreated() async throws {
        let harness = try await Harness.start(withWorker: false) { $0.redis.shards = 4 }
        defer { harness.stop() }
        let keys = harness.store.keys
        let record = keys.idempotency(tenant: "acme", agent: "demo", key: "ghost-1")
        // A gateway reserved the key 20 s ago and died before creating its execution.
        let stale = Identifiers.nowMilliseconds() - 20_000
        try await harness.redis.send(
            "HSET", record, "executionId", "exec_ghost", "tenant", "acme", "agent", "demo", "key", "ghost-1",
            "requestDigest", "x", "reservedAt", stale)
        let taken = try await post(harness, token: harness.token, key: "ghost-1")
        #expect(taken.status == 200)
        #expect(taken.headers["idempotent-replayed"] == nil)
        #expect(taken.executionID != "exec_ghost")
        taken.close()
        #expect(try await harness.redis.send("HGET", record, "executionId").string == taken.executionID)
        // A create refused (the conversation is busy) leaves the key free for the next request.
        let body = #"{"messages":[{"role":"user","content":"hi"}],"conversationId":"conv_busy"}"#
        let running = try await post(harness, token: harness.token, key: "busy-1", body: body)
        #expect(running.status == 200)
        running.close()
        let busy = try await harness.http.send(
            .POST, "/run/api/executions",
            headers: harness.auth() + [("Content-Type", "application/json"), ("Idempotency-Key", "busy-2")],
            body: Array(body.utf8))
        #expect(busy.status == 409)
        let busyRecord = keys.idempotency(tenant: "acme", agent: "demo", key: "busy-2")
        #expect(try await harness.redis.send("EXISTS", busyRecord).int == 0)
    }

    @Test func keysAreMadeOnlyForValidNames() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let keys = APIKeys(redis: harness.redis, keys: harness.store.keys, configured: [])
        for (tenant, agent) in [("a:b", "c"), ("a", "b:c"), ("", "c"), ("a b", "c"), ("a", "{c}")] {
            await #expect(throws: APIKeyError.self) { try await keys.create(tenant: tenant, agent: agent) }
        }
        let made = try await keys.create(tenant: "acme.eu-1", agent: "support_bot")
        let id = try #require(APIKeys.parse(made.token)?.id)
        #expect(APIKeys.isIssued(id, secret: try #require(try await keys.idSecret())))
    }

    @Test func aFloodOfMadeUpKeyIdsCostsNoRedisCommands() async throws {
        // A Redis server of its own, so that its command counter counts this gateway alone.
        let server = try RedisServer()
        defer { server.stop() }
        let harness = try await Harness.start(withWorker: false) {
            $0.redis.url = server.url
            $0.http.keyCacheSeconds = 60
        }
        defer { harness.stop() }
        // Warm up: the id secret is read once.
        #expect(try await harness.status("exec_x").status == 404)
        func commands() async throws -> Int {
            let info = try await harness.redis.send("INFO", "stats").string ?? ""
            let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("total_commands_processed:") }
            return Int(line?.split(separator: ":").last ?? "") ?? -1
        }
        let before = try await commands()
        let client = harness.http
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var refused = 0
                    for _ in 0..<150 {
                        let token = "tk_\(Identifiers.token(22))_\(Identifiers.token(32))"
                        let response = try await client.send(
                            .GET, "/run/api/executions/exec_x", headers: [("Authorization", "Bearer \(token)")])
                        if response.status == 401 { refused += 1 }
                    }
                    return refused
                }
            }
            var refused = 0
            for try await count in group { refused += count }
            #expect(refused == 1200)
        }
        let spent = try await commands() - before
        // The INFO calls themselves, and at most a re-read of the id secret.
        #expect(spent <= 4, "1,200 made-up key ids cost \(spent) Redis commands")
        #expect(harness.gateway.authenticator.cachedCount <= 1)
    }

    @Test func theKeyCacheIsBoundedAndDropsTheLeastRecentlyUsed() async throws {
        let harness = try await Harness.start(withWorker: false) {
            $0.http.keyCacheEntries = 3
            $0.http.keyCacheSeconds = 60
        }
        defer { harness.stop() }
        var tokens: [String] = []
        for index in 0..<6 { tokens.append(try await harness.makeKey(tenant: "t\(index)", agent: "demo")) }
        for token in tokens + tokens {
            #expect(try await harness.status("exec_x", token: token).status == 404)
        }
        #expect(harness.gateway.authenticator.cachedCount == 3)
    }
}

@Suite("LRU cache")
struct LRUCacheTests {
    @Test func keepsTheMostRecentlyUsedWithinItsCapacity() {
        var cache = LRUCache<String, Int>(capacity: 3)
        cache.set("a", 1)
        cache.set("b", 2)
        cache.set("c", 3)
        #expect(cache.get("a") == 1)  // a is now the most recent
        cache.set("d", 4)  // drops b, the least recently used
        #expect(cache.get("b") == nil)
        #expect(cache.keysByRecency == ["d", "a", "c"])
        cache.set("c", 30)
        #expect(cache.keysByRecency == ["c", "d", "a"])
        cache.remove("d")
        #expect(cache.keysByRecency == ["c", "a"])
        #expect(cache.count == 2)
        cache.set("e", 5)
        cache.set("f", 6)
        #expect(cache.keysByRecency == ["f", "e", "c"])
        #expect(cache.get("c") == 30)
        for i in 0..<1000 { cache.set("k\(i)", i) }
        #expect(cache.count == 3)
        #expect(cache.keysByRecency == ["k999", "k998", "k997"])
    }
}
