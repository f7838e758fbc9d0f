import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import RedisKit
import Synchronization
import TetherClient
import TetherCore

/// `tether bench stream`: K concurrent executions × M events through a real gateway and workers, clients parsing
/// SSE. Reports time to first byte, delivery latency, events per second, CPU per event, gateway memory and Redis
/// connections; `--idle N` instead holds N idle clients on suspended executions and reports memory per client.
struct StreamBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stream",
        abstract: "End-to-end streaming benchmark against a running gateway and workers."
    )

    @Option(help: "Gateway port on 127.0.0.1.") var port: Int = 8080
    @Option(help: "API key (tk_…).") var key: String
    @Option(help: "Redis URL (or redis+cluster://…), to count the gateway's connections.")
    var redisURL: String = "redis://127.0.0.1:6379"
    @Option(help: "The gateway's Redis client name (CLIENT LIST name=).") var gatewayClientName = "tether-gateway"
    @Option(help: "The gateway's process id, to read its memory and CPU time.") var gatewayPid: Int?
    @Option(help: "The worker's process id, to read its CPU time.") var workerPid: Int?
    @Option(help: "Redis's process id, to read its CPU time (once per node of a cluster).") var redisPid: [Int] = []
    @Option(help: "Concurrent executions (and streams) in the throughput phase.") var executions: Int = 1000
    @Option(help: "Events (tokens) per execution in the throughput phase.") var events: Int = 100
    @Option(help: "Executions created one after another to measure time to first byte.") var ttfbSamples: Int = 300
    @Flag(help: "Also print the delivery latency of each second of the run (to see bursts; always in --json).")
    var timeline = false
    @Option(help: "A process to SIGKILL during the throughput phase (a cluster master, for a failover).")
    var killPid: Int?
    @Option(help: "Milliseconds into the throughput phase to kill --kill-pid.") var killAfterMs = 3000
    @Option(help: "The key prefix, to read the logs for --kill-pid's check.") var prefix = "tether"
    @Option(
        help:
            "Instead of the other phases: N idle clients, each on an execution suspended waiting for approval; reports the gateway's memory per client."
    )
    var idle: Int?
    @Option(help: "Seconds the idle clients are held once all are open (the gateway's CPU is read over them).")
    var idleSeconds = 16
    @Option(help: "Idle clients being opened at once.") var idleConcurrency = 200
    @Option(help: "Write the results as JSON to this file.") var json: String?

    func run() async throws {
        let http = HTTPClient(port: port)
        var settings = TetherConfig.Redis()
        settings.url = redisURL
        let redis = try settings.makeClient(name: "tether-bench")
        defer { redis.shutdown() }
        var report = BenchReport()
        report.line(
            "machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, gateway, workers, Redis and clients sharing it"
        )
        do {
            if let idle {
                try await measureIdle(idle, http, redis, into: &report)
            } else {
                try await measureFirstByte(http, into: &report)
                try await measureThroughput(http, redis, into: &report)
            }
        } catch {
            // A failed check's figures are written too: they are what the run has to show.
            if let json { try? report.write(to: json) }
            throw error
        }
        if let json { try report.write(to: json) }
    }

    func validate() throws {
        if let idle, idle < 1 { throw ValidationError("--idle needs at least 1 client") }
        if idleSeconds < 1 { throw ValidationError("--idle-seconds needs at least 1 second") }
        if idleConcurrency < 1 { throw ValidationError("--idle-concurrency needs at least 1") }
    }

    /// Phase 1: time to first byte, one creation at a time (the latency a lone client sees).
    private func measureFirstByte(_ http: HTTPClient, into report: inout BenchReport) async throws {
        var ttfb: [Double] = []
        for _ in 0..<ttfbSamples {
            let result = try await runOne(http, count: 3)
            ttfb.append(result.ttfb)
        }
        ttfb.sort()
        report.set("ttfb.samples", ttfbSamples)
        report.set("ttfb.p50Ms", percentile(ttfb, 0.5))
        report.set("ttfb.p99Ms", percentile(ttfb, 0.99))
        report.line(
            String(
                format: "time to first byte (POST → first frame), %d sequential: p50 %.2f ms, p99 %.2f ms", ttfbSamples,
                percentile(ttfb, 0.5), percentile(ttfb, 0.99)))
    }

    /// Phase 2: K concurrent streams of M events each.
    private func measureThroughput(
        _ http: HTTPClient, _ redis: any RedisClientProtocol, into report: inout BenchReport
    ) async throws {
        let before = try await gatewayConnections(redis)
        let peakConnections = Mutex(before)
        let sampler = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                if let n = try? await gatewayConnections(redis) { peakConnections.withLock { $0 = max($0, n) } }
            }
        }
        let peakMemory = Mutex(0)
        let memorySampler = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                if let kib = residentKiB() { peakMemory.withLock { $0 = max($0, kib) } }
            }
        }
        let cpuBefore = CPUSnapshot(self)
        let clock = ContinuousClock()
        let start = clock.now
        let startWall = Date().timeIntervalSince1970 * 1000
        let killer = killPid.map { pid in
            Task {
                try await Task.sleep(for: .milliseconds(killAfterMs))
                kill(pid_t(pid), SIGKILL)
                print("  killed process \(pid) after \(killAfterMs) ms")
            }
        }
        let results = try await withThrowingTaskGroup(of: StreamResult.self) { group in
            for _ in 0..<executions {
                group.addTask { try await runOne(http, count: events, keepingIDs: killPid != nil) }
            }
            var all: [StreamResult] = []
            for try await result in group { all.append(result) }
            return all
        }
        killer?.cancel()
        let elapsed = clock.now - start
        sampler.cancel()
        memorySampler.cancel()
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let delivered = results.reduce(0) { $0 + $1.frames }
        var latencies = results.flatMap { $0.latencies.map(\.latency) }
        latencies.sort()
        // Steady state, with every stream open: events appended after every stream had its first byte (the creation
        // burst is over) and before the first stream's final frame (the teardown has not begun).
        let allOpen = results.map(\.firstByteWallMilliseconds).max() ?? 0
        let firstFinal = results.compactMap { $0.latencies.last?.appendedMilliseconds }.min() ?? 0
        var steady = results.flatMap {
            $0.latencies.filter { $0.appendedMilliseconds > allOpen && $0.appendedMilliseconds < firstFinal }
                .map(\.latency)
        }
        steady.sort()
        var concurrentTTFB = results.map(\.ttfb)
        concurrentTTFB.sort()
        let complete = results.filter(\.finished).count
        let creationSeconds = max((allOpen - startWall) / 1000, 1e-3)
        report.set("throughput.executions", executions)
        report.set("throughput.eventsPerExecution", events)
        report.set("throughput.complete", complete)
        report.set("throughput.frames", delivered)
        report.set("throughput.seconds", seconds)
        report.set("throughput.eventsPerSecond", Double(delivered) / seconds)
        report.set("throughput.createdPerSecond", Double(executions) / creationSeconds)
        report.set("throughput.latencyP50Ms", percentile(latencies, 0.5))
        report.set("throughput.latencyP99Ms", percentile(latencies, 0.99))
        report.set("throughput.steadyEvents", steady.count)
        report.set("throughput.steadyLatencyP50Ms", percentile(steady, 0.5))
        report.set("throughput.steadyLatencyP99Ms", percentile(steady, 0.99))
        report.set("throughput.ttfbUnderLoadP50Ms", percentile(concurrentTTFB, 0.5))
        report.set("throughput.ttfbUnderLoadP99Ms", percentile(concurrentTTFB, 0.99))
        report.line(
            "\(executions) concurrent executions × \(events) events: \(complete) streams complete, \(delivered) frames in \(String(format: "%.2f", seconds)) s"
        )
        report.line(String(format: "  events delivered: %.0f/s", Double(delivered) / seconds))
        report.line(
            String(
                format:
                    "  executions created: %d in %.2f s, %.0f/s (from the first POST to the last stream's first byte)",
                executions, (allOpen - startWall) / 1000, Double(executions) / creationSeconds))
        report.line(
            String(
                format:
                    "  delivery latency (append → client), p50 %.2f ms, p99 %.2f ms (Redis ids have 1 ms resolution: upper bounds)",
                percentile(latencies, 0.5), percentile(latencies, 0.99)))
        report.line(
            String(
                format:
                    "  delivery latency while all %d streams are open (%d events): p50 %.2f ms, p99 %.2f ms",
                executions, steady.count, percentile(steady, 0.5), percentile(steady, 0.99)))
        report.line(
            String(
                format: "  time to first byte under this load: p50 %.2f ms, p99 %.2f ms",
                percentile(concurrentTTFB, 0.5),
                percentile(concurrentTTFB, 0.99)))
        let rows = timelineRows(results)
        report.set("timeline", rows: rows)
        if timeline {
            for row in rows {
                report.line(
                    String(
                        format: "    second %3.0f: %6.0f events, p50 %.2f ms, p99 %.2f ms, max %.2f ms", row["second"]!,
                        row["events"]!, row["p50Ms"]!, row["p99Ms"]!, row["maxMs"]!))
            }
        }
        let peak = peakConnections.withLock { $0 }
        report.set("throughput.gatewayRedisConnectionsIdle", before)
        report.set("throughput.gatewayRedisConnectionsPeak", peak)
        report.line("  gateway Redis connections: \(before) idle, \(peak) at most during the run")
        CPUSnapshot(self).report(since: cpuBefore, seconds: seconds, events: delivered, into: &report)
        if gatewayPid != nil {
            let peakKiB = peakMemory.withLock { $0 }
            let afterKiB = residentKiB() ?? 0
            report.set("throughput.gatewayRSSPeakMiB", Double(peakKiB) / 1024)
            report.set("throughput.gatewayRSSAfterMiB", Double(afterKiB) / 1024)
            report.line(
                "  gateway memory (RSS): \(peakKiB / 1024) MiB at most during the run, \(afterKiB / 1024) MiB after")
        }
        if killPid != nil { try await checkLogs(results, redis, into: &report) }
    }

    /// The delivery latency of each second of the run (by append time): events, p50, p99 and max.
    private func timelineRows(_ results: [StreamResult]) -> [[String: Double]] {
        let all = results.flatMap(\.latencies)
        let start = all.map(\.appendedMilliseconds).min() ?? 0
        var seconds: [Int: [Double]] = [:]
        for sample in all {
            seconds[Int((sample.appendedMilliseconds - start) / 1000), default: []].append(sample.latency)
        }
        return seconds.keys.sorted().map { second in
            let values = seconds[second]!.sorted()
            return [
                "second": Double(second), "events": Double(values.count), "p50Ms": percentile(values, 0.5),
                "p99Ms": percentile(values, 0.99), "maxMs": values.last ?? 0,
            ]
        }
    }

    /// After a failover: every event a client was sent must be in the log the cluster holds now.
    private func checkLogs(
        _ results: [StreamResult], _ redis: any RedisClientProtocol, into report: inout BenchReport
    ) async throws {
        var settings = TetherConfig.Redis()
        settings.url = redisURL
        settings.prefix = prefix
        let store = ExecutionStore(redis: redis, keys: settings.keys)
        var sent = 0
        var missing = 0
        var streamsMissing = 0
        for result in results {
            guard let id = result.executionID else { continue }
            let log = Set(try await store.allEvents(id).map(\.id))
            let lost = result.ids.filter { !log.contains($0) }.count
            sent += result.ids.count
            missing += lost
            if lost > 0 { streamsMissing += 1 }
        }
        report.set("failover.sent", sent)
        report.set("failover.missing", missing)
        report.set("failover.streamsMissing", streamsMissing)
        report.line(
            "  after the failover: \(sent) events sent to clients, \(missing) of them not in the log (\(streamsMissing) streams)"
        )
        if missing > 0 { throw ExitCode.failure }
    }

    struct StreamResult: Sendable {
        var ttfb: Double
        var firstByteWallMilliseconds: Double
        var frames: Int
        var latencies: [(appendedMilliseconds: Double, latency: Double)]
        var finished: Bool
        /// The ids of the frames, when kept (``killPid``).
        var ids: [String] = []
        var executionID: String?
    }

    private func runOne(_ http: HTTPClient, count: Int, keepingIDs: Bool = false) async throws -> StreamResult {
        let body = "{\"messages\":[{\"role\":\"user\",\"content\":\"count to \(count)\"}]}"
        let probe = StreamProbe(expected: count, start: DispatchTime.now().uptimeNanoseconds, keepingIDs: keepingIDs)
        // The probe reads each chunk where the connection reads it, on its event loop (no task switch per chunk).
        let (status, headers) = try await http.stream(
            .POST, "/run/api/executions",
            headers: [("Authorization", "Bearer \(key)"), ("Content-Type", "application/json")], body: Array(body.utf8)
        ) { chunk in probe.take(chunk) }
        guard status == 200 else { throw ValidationError("POST answered \(status)") }
        var result = probe.result
        result.executionID = headers["x-workflow-run-id"]
        return result
    }

    /// The gateway's connections, on every master of a cluster.
    func gatewayConnections(_ redis: any RedisClientProtocol) async throws -> Int {
        let lists: [RESPValue]
        if let cluster = redis as? RedisClusterClient {
            lists = try await cluster.sendToMasters(RedisCommand("CLIENT", "LIST"))
        } else {
            lists = [try await redis.send("CLIENT", "LIST")]
        }
        return try lists.reduce(0) { total, list in
            total
                + (try list.requireString()).split(separator: "\n").filter {
                    $0.contains(" name=\(gatewayClientName) ")
                }.count
        }
    }

    func residentKiB() -> Int? { gatewayPid.flatMap(ProcessStats.residentKiB) }

    func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
}
