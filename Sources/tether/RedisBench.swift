import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import RedisKit

/// `tether bench redis`: RedisKit against `redis-benchmark` on the same server, in the same run.
struct RedisBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "redis",
        abstract: "Pipelined XADD throughput and PING round trip: RedisKit against redis-benchmark."
    )

    @Option(help: "Redis URL (redis://host:port).")
    var url: String = ProcessInfo.processInfo.environment["TETHER_REDIS_URL"] ?? "redis://127.0.0.1:6379"

    @Option(help: "XADD commands per run.")
    var requests: Int = 400_000

    @Option(help: "Connections used for XADD (redis-benchmark -c).")
    var connections: Int = 4

    @Option(help: "Pipeline depth for XADD (redis-benchmark -P).")
    var pipeline: Int = 32

    @Option(help: "PING round trips measured, one at a time on one connection.")
    var pings: Int = 20_000

    @Option(help: "Rounds of each measurement; the best round is reported.")
    var rounds: Int = 5

    @Flag(inversion: .prefixedNo, help: "Run every benchmark connection on one event loop, as redis-benchmark does.")
    var singleLoop = true

    @Option(help: "Path of redis-benchmark.")
    var redisBenchmark: String = "redis-benchmark"

    func run() async throws {
        var configuration = try RedisConfiguration(url: url)
        configuration.poolSize = max(connections, 1)
        if singleLoop {
            // Like redis-benchmark, one thread drives every connection.
            configuration.eventLoopGroup = MultiThreadedEventLoopGroup.singleton.next()
        }
        guard case .tcp(let host, let port) = configuration.endpoint else {
            throw ValidationError("the benchmark needs a TCP Redis URL (redis-benchmark takes host and port)")
        }
        let client = RedisClient(configuration: configuration)
        defer { client.shutdown() }
        let key = "tether:bench:xadd"
        let referenceKey = "tether:bench:xadd-rb"

        print("Redis at \(host):\(port); \(ProcessInfo.processInfo.activeProcessorCount) cores")
        print("XADD: \(requests) commands, \(connections) connections, pipeline \(pipeline); best of \(rounds)")
        var ours = 0.0
        var theirs = 0.0
        for _ in 0..<rounds {
            try await client.send("DEL", key, referenceKey)
            ours = max(ours, try await xaddRate(client, key: key))
            let csv = try runRedisBenchmark(
                host: host, port: port,
                ["-c", "\(connections)", "-P", "\(pipeline)", "-n", "\(requests)", "XADD", referenceKey, "*", "f", "v"])
            theirs = max(theirs, csv.rps)
        }
        try await client.send("DEL", key, referenceKey)
        print(String(format: "  redis-benchmark  %10.0f XADD/s", theirs))
        print(String(format: "  RedisKit         %10.0f XADD/s", ours))
        print(String(format: "  ratio            %10.2f (RedisKit / redis-benchmark; goal >= 0.70)", ours / theirs))

        print("PING round trip: \(pings) sequential on one connection; best median of \(rounds)")
        var ourMedian = Double.infinity
        var theirMedian = Double.infinity
        let connection = try await client.dedicatedConnection()
        defer { connection.close() }
        for _ in 0..<rounds {
            ourMedian = min(ourMedian, try await pingMedian(connection))
            let csv = try runRedisBenchmark(
                host: host, port: port, ["-c", "1", "-P", "1", "-n", "\(pings)", "-t", "ping_mbulk"])
            theirMedian = min(theirMedian, csv.p50 * 1000)
        }
        print(String(format: "  redis-benchmark  %8.1f µs median", theirMedian))
        print(String(format: "  RedisKit         %8.1f µs median", ourMedian))
        print(
            String(
                format: "  ratio            %8.2f (RedisKit / redis-benchmark; goal <= 1.5)", ourMedian / theirMedian))
    }

    /// `connections` tasks, each sending batches of `pipeline` XADDs on its own pooled connection.
    private func xaddRate(_ client: RedisClient, key: String) async throws -> Double {
        let batch = (0..<pipeline).map { _ in RedisCommand("XADD", key, "*", "f", "v") }
        let perConnection = requests / connections / pipeline
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<connections {
                group.addTask {
                    try await client.withConnection { connection in
                        for _ in 0..<perConnection {
                            let replies = try await connection.send(batch: batch)
                            if let error = replies.first(where: { $0.errorMessage != nil }) {
                                throw RedisError(.serverError, error.errorMessage!)
                            }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Double(perConnection * connections * pipeline) / seconds
    }

    /// The median PING round trip, in microseconds.
    private func pingMedian(_ connection: RedisConnection) async throws -> Double {
        var samples: [Double] = []
        samples.reserveCapacity(pings)
        let clock = ContinuousClock()
        for _ in 0..<pings {
            let start = clock.now
            try await connection.send("PING")
            let elapsed = clock.now - start
            samples.append(Double(elapsed.components.attoseconds) / 1e12 + Double(elapsed.components.seconds) * 1e6)
        }
        samples.sort()
        return samples[samples.count / 2]
    }

    private struct BenchmarkRow {
        var rps: Double
        var p50: Double
    }

    /// Runs redis-benchmark with `--csv` and reads its last row: requests per second and p50 latency (ms).
    private func runRedisBenchmark(host: String, port: Int, _ arguments: [String]) throws -> BenchmarkRow {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [redisBenchmark, "-h", host, "-p", "\(port)", "--csv", "-q"] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0,
            let line = text.split(separator: "\n").last(where: { !$0.hasPrefix("\"test\"") })
        else {
            throw ValidationError("redis-benchmark failed: \(text)")
        }
        let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        guard fields.count >= 5, let rps = Double(fields[1]), let p50 = Double(fields[4]) else {
            throw ValidationError("cannot read redis-benchmark output: \(line)")
        }
        return BenchmarkRow(rps: rps, p50: p50)
    }
}
