import Foundation
import RedisKit
import TestSupport
import Testing
import TetherClient
import TetherCore

@Suite("Many clients", .timeLimit(.minutes(2)))
struct ConcurrencyTests {
    /// Gateway connections to Redis, as Redis itself counts them (`CLIENT LIST`, by the gateway's client name).
    func gatewayConnections(_ harness: Harness) async throws -> Int {
        let list = try await harness.redis.send("CLIENT", "LIST").requireString()
        return list.split(separator: "\n").filter { $0.contains(" name=gw-\(harness.config.redis.prefix) ") }.count
    }

    @Test func fiveHundredConcurrentStreamsOnABoundedNumberOfRedisConnections() async throws {
        let poolSize = 8
        let harness = try await Harness.start(heartbeatSeconds: 1, poolSize: poolSize)
        defer { harness.stop() }
        // 50 executions waiting for approval, 10 clients on each: 500 live streams.
        var executions: [(id: String, toolCallID: String)] = []
        for i in 0..<50 {
            let stream = try await harness.create("send an email to user\(i)@example.com")
            let frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
            executions.append((stream.executionID, frames.last?.typed?["toolCallId"]?.stringValue ?? ""))
            stream.close()
        }
        let streams = try await withThrowingTaskGroup(of: HTTPStream.self) { group in
            for execution in executions {
                for _ in 0..<10 { group.addTask { try await harness.reconnect(execution.id) } }
            }
            var all: [HTTPStream] = []
            for try await stream in group { all.append(stream) }
            return all
        }
        #expect(streams.count == 500)
        #expect(streams.allSatisfy { $0.status == 200 })
        #expect(try await eventually { harness.gateway.tailer.clientCount == 500 })
        #expect(harness.gateway.tailer.watchedCount == 50)
        // The bound: the pool plus one pub/sub connection, whatever the number of clients.
        let connections = try await gatewayConnections(harness)
        #expect(connections <= poolSize + 1, "gateway holds \(connections) Redis connections")
        // Streams are tailed through the client that reads replicas (on one server, the client itself).
        #expect(harness.gatewayRedis.replicaReads.pubSub.subscribedCount == 50)

        // Every client sees the rest of its execution after the approval.
        for execution in executions {
            #expect(try await harness.decide(execution.id, execution.toolCallID, approved: true).status == 200)
        }
        let finished = try await withThrowingTaskGroup(of: Bool.self) { group in
            for stream in streams {
                group.addTask {
                    let frames = try await readFrames(stream) { _ in false }
                    return frames.last?.finishReason == "stop" && replyText(frames).hasPrefix("I'll draft")
                        && replyText(frames).contains("Done: I sent the email")
                }
            }
            var count = 0
            for try await ok in group where ok { count += 1 }
            return count
        }
        #expect(finished == 500)
        #expect(try await gatewayConnections(harness) <= poolSize + 1)
        // Clients gone, channels released.
        #expect(try await eventually { harness.gateway.tailer.watchedCount == 0 })
        #expect(try await eventually { harness.gatewayRedis.pubSub.subscribedCount == 0 })
    }

    @Test func aClientThatDisconnectsIsNoticedAtOnce() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await harness.create("email hal@example.com")
        _ = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let id = stream.executionID
        let second = try await harness.reconnect(id)
        #expect(try await eventually { harness.gateway.tailer.clientCount == 2 })
        stream.close()
        second.close()
        #expect(try await eventually(2) { harness.gateway.tailer.clientCount == 0 })
        #expect(harness.gateway.tailer.watchedCount == 0)
    }
}
