import Synchronization
import TestSupport
import Testing

@testable import RedisKit

@Suite("Failures and recovery", .timeLimit(.minutes(2)))
struct RedisRecoveryTests {
    @Test func recoversAfterClientKill() async throws {
        let server = try RedisServer()
        let client = try RedisClient(url: server.url)
        let admin = try RedisClient(url: server.url)
        defer {
            client.shutdown()
            admin.shutdown()
        }
        let channel = "announcements"
        let resubscribed = Mutex(0)
        client.subscriber.onResubscribe { resubscribed.withLock { $0 += 1 } }
        let subscription = try await client.subscriber.subscribe(channel)
        try await client.send("SET", "k", "v")
        // Kill every connection of the client: pooled and pub/sub alike (the admin's own is skipped).
        let killedNormal = try await admin.send("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").requireInt()
        let killedPubSub = try await admin.send("CLIENT", "KILL", "TYPE", "pubsub").requireInt()
        #expect(killedNormal >= 1)
        #expect(killedPubSub == 1)
        // The pool replaces the broken connection.
        #expect(try await eventually { (try? await client.send("GET", "k").string) == "v" })
        // The subscriber reconnects and subscribes again.
        #expect(try await eventually { resubscribed.withLock { $0 } == 1 })
        try await admin.send("PUBLISH", channel, "after-kill")
        var iterator = subscription.makeAsyncIterator()
        #expect(await iterator.next()?.string == "after-kill")
    }

    @Test func failsFastWhileRedisIsDownAndRecoversAfterRestart() async throws {
        let server = try RedisServer()
        var configuration = try RedisConfiguration(url: server.url)
        configuration.reconnectBackoffMax = .milliseconds(200)
        let client = RedisClient(configuration: configuration)
        defer { client.shutdown() }
        let resubscribed = Mutex(0)
        client.subscriber.onResubscribe { resubscribed.withLock { $0 += 1 } }
        let subscription = try await client.subscriber.subscribe("events")
        try await client.send("SET", "k", "before")

        server.stop()
        // Every call fails, quickly and with a clear error, while the server is away.
        for _ in 0..<20 {
            let start = ContinuousClock.now
            await #expect {
                try await client.send("GET", "k")
            } throws: { error in
                let code = (error as? RedisError)?.code
                return code == .unavailable || code == .connectionClosed
            }
            #expect(ContinuousClock.now - start < .seconds(1))
        }
        await #expect {
            try await client.subscriber.subscribe("other")
        } throws: { error in
            let code = (error as? RedisError)?.code
            return code == .unavailable || code == .connectionClosed
        }

        try server.start()
        #expect(try await eventually(10) { (try? await client.send("SET", "k", "after").string) == "OK" })
        #expect(try await eventually(10) { resubscribed.withLock { $0 } >= 1 })
        try await client.send("PUBLISH", "events", "back")
        var iterator = subscription.makeAsyncIterator()
        #expect(await iterator.next()?.string == "back")
    }

    @Test func aServerStillLoadingItsDataIsUnavailableNotRefusedCredentials() async throws {
        // A pause per key while loading, and clients served between every KiB loaded: the load takes long enough
        // to be seen, and Redis answers LOADING meanwhile (even to the handshake's PING).
        let server = try RedisServer(arguments: [
            "--key-load-delay", "50", "--loading-process-events-interval-bytes", "1024",
        ])
        var configuration = try RedisConfiguration(url: server.url)
        configuration.reconnectBackoffMax = .milliseconds(100)
        let client = RedisClient(configuration: configuration)
        defer { client.shutdown() }
        _ = try await client.send(batch: (0..<20_000).map { RedisCommand("SET", "k\($0)", "v") })
        try await client.send("SAVE")
        server.stop()
        try server.start()

        // The first command may still go out on the connection the restart broke (connectionClosed); then new
        // connections meet LOADING, which is "unavailable", never refused credentials.
        var sawLoading = false
        let deadline = ContinuousClock.now + .seconds(30)
        while !sawLoading, ContinuousClock.now < deadline {
            do {
                _ = try await client.send("GET", "k1")
                break
            } catch let error as RedisError {
                #expect(error.code != .authenticationFailed, "\(error)")
                if error.code == .unavailable, error.message.contains("LOADING") {
                    sawLoading = true
                } else if error.code == .connectionClosed || error.code == .unavailable {
                    try await Task.sleep(for: .milliseconds(10))
                } else {
                    Issue.record("unexpected \(error)")
                    break
                }
            }
        }
        #expect(sawLoading, "the server finished loading before the client saw it loading")
        // Once the data is in, the client connects by itself.
        #expect(try await eventually(30) { (try? await client.send("GET", "k1").string) == "v" })
        #expect(try await client.send("DBSIZE").int == 20_000)
    }

    @Test func wrongPasswordIsAnAuthenticationError() async throws {
        let server = try RedisServer(arguments: ["--requirepass", "right"])
        let wrong = RedisClient(configuration: try RedisConfiguration(url: "redis://:wrong@127.0.0.1:\(server.port)"))
        let none = try RedisClient(url: server.url)
        let right = RedisClient(configuration: try RedisConfiguration(url: "redis://:right@127.0.0.1:\(server.port)/2"))
        defer {
            wrong.shutdown()
            none.shutdown()
            right.shutdown()
        }
        await #expect {
            try await wrong.send("PING")
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .authenticationFailed && error.message.contains("WRONGPASS")
        }
        await #expect {
            try await none.send("PING")
        } throws: { error in
            guard let error = error as? RedisError else { return false }
            return error.code == .authenticationFailed && error.message.contains("NOAUTH")
        }
        #expect(try await right.send("PING").string == "PONG")
        // SELECT took effect: the key lands in db 2.
        try await right.send("SET", "in-two", "yes")
        #expect(try await right.send("CLIENT", "INFO").requireString().contains("db=2"))

        // An ACL user.
        try await right.send("ACL", "SETUSER", "alice", "on", ">alicepw", "~*", "+@all")
        let alice = RedisClient(
            configuration: try RedisConfiguration(url: "redis://alice:alicepw@127.0.0.1:\(server.port)"))
        defer { alice.shutdown() }
        #expect(try await alice.send("ACL", "WHOAMI").string == "alice")
    }

    @Test func unixSocket() async throws {
        let server = try RedisServer()
        // The server lives to the end of the test (its last use is the path: ARC could end it there, and kill it).
        defer { withExtendedLifetime(server) {} }
        let client = try RedisClient(url: "unix://\(server.socketPath)?db=1")
        defer { client.shutdown() }
        #expect(try await client.send("PING").string == "PONG")
        #expect(try await client.send("CLIENT", "INFO").requireString().contains("db=1"))
    }

    @Test func unreachableServerFailsAtOnce() async throws {
        let server = try RedisServer()
        let url = server.url
        server.stop()
        // A connect timeout far longer than the bound below: a refused connection must not wait for it.
        var configuration = try RedisConfiguration(url: url)
        configuration.connectTimeout = .seconds(60)
        let client = RedisClient(configuration: configuration)
        defer { client.shutdown() }
        let start = ContinuousClock.now
        await #expect {
            try await client.send("PING")
        } throws: { error in
            (error as? RedisError)?.code == .unavailable
        }
        // At once, not after the connect timeout (a loose bound: the 2-core machine also starts the cluster tests'
        // servers meanwhile).
        #expect(ContinuousClock.now - start < .seconds(20))
    }
}
