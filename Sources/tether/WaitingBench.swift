import ArgumentParser
import Foundation
import RedisKit
import TetherClient
import TetherCore

/// `tether bench waiting`: what executions waiting for approval cost. Phase `park` creates N executions of the demo
/// agent that each ask to send an email and wait (parked), and reports Redis memory per waiting execution and the
/// worker's memory and CPU; phase `resume` (run against a worker started after the park) reports a fresh worker's
/// memory and idle CPU with all of them waiting, then approves some and times their completion.
struct WaitingBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "waiting", abstract: "Cost of executions parked waiting for approval.")

    @Option(help: "Gateway port on 127.0.0.1.") var port: Int = 8080
    @Option(help: "API key (tk_…) of the demo agent.") var key: String
    @Option(help: "Redis URL.") var redisURL: String = "redis://127.0.0.1:6379"
    @Option(help: "The key prefix the gateway and worker use.") var prefix = "tether"
    @Option(help: "The worker's process id.") var workerPid: Int
    @Option(help: "`park` or `resume`.") var phase: String
    @Option(help: "Executions to create and park.") var executions: Int = 100_000
    @Option(help: "Creations in flight at once.") var concurrency: Int = 200
    @Option(help: "Executions to approve in the resume phase.") var approve: Int = 1000

    func run() async throws {
        let redis = try RedisClient(url: redisURL)
        defer { redis.shutdown() }
        let keys = Keys(prefix: prefix)
        switch phase {
        case "park": try await park(redis, keys)
        case "resume": try await resume(redis, keys)
        default: throw ValidationError("--phase is park or resume")
        }
    }

    private func park(_ redis: RedisClient, _ keys: Keys) async throws {
        let http = HTTPClient(port: port)
        let memoryBefore = try await usedMemory(redis)
        let workerBefore = ProcessStats.residentKiB(workerPid) ?? 0
        let clock = ContinuousClock()
        let start = clock.now
        let body = Array(#"{"messages":[{"role":"user","content":"Please send an email to bench@example.com"}]}"#.utf8)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<concurrency {
                group.addTask {
                    for _ in stride(from: lane, to: executions, by: concurrency) {
                        // The execution goes on without its client: close the stream once it is created.
                        let stream = try await http.open(
                            .POST, "/run/api/executions",
                            headers: [("Authorization", "Bearer \(key)"), ("Content-Type", "application/json")],
                            body: body)
                        stream.close()
                        guard stream.status == 200 else { throw ValidationError("POST answered \(stream.status)") }
                    }
                }
            }
            try await group.waitForAll()
        }
        let created = clock.now - start
        var parked = 0
        while parked < executions {
            try await Task.sleep(for: .milliseconds(500))
            parked = try await redis.send("ZCARD", keys.deadlines(shard: 0)).int ?? 0
        }
        let allParked = clock.now - start
        let memoryAfter = try await usedMemory(redis)
        let pending = try await redis.send("XPENDING", keys.jobs(shard: 0), keys.jobsGroup).array?.first?.int ?? -1
        let idle = try await idleCPU()
        let workerAfter = ProcessStats.residentKiB(workerPid) ?? 0
        print("created \(executions) executions in \(created), all parked after \(allParked)")
        print(
            String(
                format:
                    "Redis memory: %.1f MiB more, %.0f bytes per waiting execution (record, events, approvals, checkpoint, conversation, deadline)",
                Double(memoryAfter - memoryBefore) / 1_048_576, Double(memoryAfter - memoryBefore) / Double(executions))
        )
        print("jobs pending in the consumer group: \(pending)")
        print(
            "worker that ran them: RSS \(workerBefore / 1024) MiB before, \(workerAfter / 1024) MiB after (the heap of the burst of runs), "
                + String(format: "CPU %.3f s over 5 s idle", idle))
    }

    private func resume(_ redis: RedisClient, _ keys: Keys) async throws {
        let waiting = try await redis.send("ZCARD", keys.deadlines(shard: 0)).int ?? 0
        let idle = try await idleCPU()
        print(
            "fresh worker with \(waiting) executions waiting: RSS \((ProcessStats.residentKiB(workerPid) ?? 0) / 1024) MiB, "
                + String(format: "CPU %.3f s over 5 s", idle))
        let ids = (try await redis.send("ZRANGE", keys.deadlines(shard: 0), 0, approve - 1).array ?? []).compactMap(
            \.string)
        let http = HTTPClient(port: port)
        let clock = ContinuousClock()
        let start = clock.now
        for id in ids {
            let fields = (try await redis.send("HKEYS", keys.approvals(id)).array ?? []).compactMap(\.string)
            guard let call = fields.first(where: { !$0.hasSuffix(":decision") }) else { continue }
            let result = try await http.send(
                .POST, "/run/api/executions/\(id)/approvals/\(call)",
                headers: [("Authorization", "Bearer \(key)"), ("Content-Type", "application/json")],
                body: Array(#"{"approved":true}"#.utf8))
            guard result.status == 200 else { throw ValidationError("approval answered \(result.status)") }
        }
        var done = 0
        while done < ids.count {
            try await Task.sleep(for: .milliseconds(100))
            done = 0
            for id in ids where try await redis.send("HGET", keys.meta(id), "status").string == "completed" {
                done += 1
            }
        }
        print("approved \(ids.count) of them: all completed \(clock.now - start) after the first approval")
    }

    /// The worker's CPU seconds over the next 5 s.
    private func idleCPU() async throws -> Double {
        let before = ProcessStats.cpuSeconds(workerPid) ?? 0
        try await Task.sleep(for: .seconds(5))
        return (ProcessStats.cpuSeconds(workerPid) ?? 0) - before
    }

    private func usedMemory(_ redis: RedisClient) async throws -> Int {
        let info = try await redis.send("INFO", "memory").requireString()
        for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("used_memory:") {
            return Int(line.dropFirst("used_memory:".count)) ?? 0
        }
        return 0
    }
}
