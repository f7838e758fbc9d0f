import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import RedisKit
import Synchronization
import TetherClient
import TetherCore

/// `tether bench stream`: K concurrent executions × M events through a real gateway and workers, clients parsing
/// SSE. Reports time to first byte, delivery latency, events per second, gateway memory and Redis connections.
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
    @Flag(help: "Also print the delivery latency of each second of the run (to see bursts).") var timeline = false
    @Option(help: "A process to SIGKILL during the throughput phase (a cluster master, for a failover).")
    var killPid: Int?
    @Option(help: "Milliseconds into the throughput phase to kill --kill-pid.") var killAfterMs = 3000
    @Option(help: "The key prefix, to read the logs for --kill-pid's check.") var prefix = "tether"

    func run() async throws {
        let http = HTTPClient(port: port)
        var settings = TetherConfig.Redis()
        settings.url = redisURL
        let redis = try settings.makeClient(name: "tether-bench")
        defer { redis.shutdown() }
        print(
            "machine: \(ProcessInfo.processInfo.activeProcessorCount) cores, gateway, workers, Redis and clients sharing it"
        )

        // Phase 1: time to first byte, one creation at a time (the latency a lone client sees).
        var ttfb: [Double] = []
        for _ in 0..<ttfbSamples {
            let result = try await runOne(http, count: 3)
            ttfb.append(result.ttfb)
        }
        ttfb.sort()
        print(
            String(
                format: "time to first byte (POST → first frame), %d sequential: p50 %.2f ms, p99 %.2f ms", ttfbSamples,
                percentile(ttfb, 0.5), percentile(ttfb, 0.99)))

        // Phase 2: K concurrent streams of M events each.
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
        let cpuBefore = cpuSeconds()
        let nodesBefore = redisPid.map(ProcessStats.cpuSeconds)
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
        print(
            "\(executions) concurrent executions × \(events) events: \(complete) streams complete, \(delivered) frames in \(String(format: "%.2f", seconds)) s"
        )
        print(String(format: "  events delivered: %.0f/s", Double(delivered) / seconds))
        print(
            String(
                format:
                    "  executions created: %d in %.2f s, %.0f/s (from the first POST to the last stream's first byte)",
                executions, (allOpen - startWall) / 1000, Double(executions) / max((allOpen - startWall) / 1000, 1e-3)))
        print(
            String(
                format:
                    "  delivery latency (append → client), p50 %.2f ms, p99 %.2f ms (Redis ids have 1 ms resolution: upper bounds)",
                percentile(latencies, 0.5), percentile(latencies, 0.99)))
        print(
            String(
                format:
                    "  delivery latency while all %d streams are open (%d events): p50 %.2f ms, p99 %.2f ms",
                executions, steady.count, percentile(steady, 0.5), percentile(steady, 0.99)))
        print(
            String(
                format: "  time to first byte under this load: p50 %.2f ms, p99 %.2f ms",
                percentile(concurrentTTFB, 0.5),
                percentile(concurrentTTFB, 0.99)))
        if timeline {
            let all = results.flatMap(\.latencies)
            let start = all.map(\.appendedMilliseconds).min() ?? 0
            var seconds: [Int: [Double]] = [:]
            for sample in all {
                seconds[Int((sample.appendedMilliseconds - start) / 1000), default: []].append(sample.latency)
            }
            for second in seconds.keys.sorted() {
                var values = seconds[second]!
                values.sort()
                print(
                    String(
                        format: "    second %3d: %6d events, p50 %.2f ms, p99 %.2f ms, max %.2f ms", second,
                        values.count,
                        percentile(values, 0.5), percentile(values, 0.99), values.last ?? 0))
            }
        }
        print("  gateway Redis connections: \(before) idle, \(peakConnections.withLock { $0 }) at most during the run")
        let cpuAfter = cpuSeconds()
        let redisName = redisPid.count > 1 ? "redis-server (\(redisPid.count) nodes)" : "redis-server"
        for (index, name) in ["gateway", "worker", redisName, "clients (this benchmark)"].enumerated() {
            guard let before = cpuBefore[index], let after = cpuAfter[index] else { continue }
            let used = after - before
            print(
                String(
                    format: "  %@ CPU: %.2f s (%.0f%% of one core), %.1f µs per delivered event", name, used,
                    used / seconds * 100, used / Double(max(delivered, 1)) * 1e6))
        }
        // On a cluster the busiest node bounds what Redis can carry: its share is what more masters divide.
        let nodesUsed = zip(nodesBefore, redisPid.map(ProcessStats.cpuSeconds)).compactMap { before, after in
            before.flatMap { before in after.map { $0 - before } }
        }
        if redisPid.count > 1, let busiest = nodesUsed.max() {
            print(
                String(
                    format: "  busiest redis-server node CPU: %.2f s (%.0f%% of one core), %.1f µs per delivered event",
                    busiest, busiest / seconds * 100, busiest / Double(max(delivered, 1)) * 1e6))
        }
        if gatewayPid != nil {
            print(
                "  gateway memory (RSS): \(peakMemory.withLock { $0 } / 1024) MiB at most during the run, \((residentKiB() ?? 0) / 1024) MiB after"
            )
        }
        if killPid != nil { try await checkLogs(results, redis) }
    }

    /// After a failover: every event a client was sent must be in the log the cluster holds now.
    private func checkLogs(_ results: [StreamResult], _ redis: any RedisClientProtocol) async throws {
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
        print(
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

    /// CPU seconds of the gateway, the worker, every Redis node (together) and this process.
    private func cpuSeconds() -> [Double?] {
        let nodes = redisPid.compactMap(ProcessStats.cpuSeconds)
        return [
            gatewayPid.flatMap(ProcessStats.cpuSeconds), workerPid.flatMap(ProcessStats.cpuSeconds),
            nodes.isEmpty || nodes.count < redisPid.count ? nil : nodes.reduce(0, +),
            ProcessStats.cpuSeconds(Int(getpid())),
        ]
    }

    /// The gateway's connections, on every master of a cluster.
    private func gatewayConnections(_ redis: any RedisClientProtocol) async throws -> Int {
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

    private func residentKiB() -> Int? { gatewayPid.flatMap(ProcessStats.residentKiB) }

    private func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
}

/// One benchmark stream's measurements, taken on its connection's event loop as chunks arrive, and read once the
/// response has ended (the end is a promise completed on that loop, so the reads happen after every write).
final class StreamProbe: @unchecked Sendable {
    private let start: UInt64
    private var scanner = FrameIDScanner()
    private var ttfb = 0.0
    private var firstByteWall = 0.0
    private var frames = 0
    private var latencies: [(appendedMilliseconds: Double, latency: Double)] = []
    private let keepingIDs: Bool
    private var ids: [String] = []

    init(expected: Int, start: UInt64, keepingIDs: Bool = false) {
        self.start = start
        self.keepingIDs = keepingIDs
        latencies.reserveCapacity(expected + 4)
    }

    func take(_ chunk: ByteBuffer) {
        let nowNanos = DispatchTime.now().uptimeNanoseconds
        let wallMicros = Double(Self.wallClockMicroseconds())
        if ttfb == 0 {
            ttfb = Double(nowNanos - start) / 1e6
            firstByteWall = wallMicros / 1000
        }
        scanner.scan(chunk) { milliseconds, id in
            frames += 1
            latencies.append((milliseconds, max(0, wallMicros - milliseconds * 1000) / 1000))
            if keepingIDs { ids.append(String(decoding: id, as: UTF8.self)) }
        }
    }

    var result: StreamBench.StreamResult {
        StreamBench.StreamResult(
            ttfb: ttfb, firstByteWallMilliseconds: firstByteWall, frames: frames, latencies: latencies,
            finished: scanner.sawStop, ids: ids)
    }

    private static func wallClockMicroseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }
}

/// A light reader of the SSE bytes for the benchmark: it only finds `id: <ms>-<seq>` lines and the final frame, so
/// that the clients spend as little as possible of the machine the server shares with them. (Full parsing is
/// tested in the integration tests.)
struct FrameIDScanner {
    private var line: [UInt8] = []
    private(set) var sawStop = false
    private static let stop = Array("\"finish_reason\":\"stop\"".utf8)

    /// Calls `onFrame` with each frame's id: its milliseconds, and the whole id's bytes.
    mutating func scan(_ chunk: ByteBuffer, onFrame: (Double, ArraySlice<UInt8>) -> Void) {
        for byte in chunk.readableBytesView {
            guard byte == 10 else {
                line.append(byte)
                continue
            }
            if line.count > 4, line[0] == 105, line[1] == 100, line[2] == 58, line[3] == 32 {  // "id: "
                var ms = 0.0
                for digit in line[4...] {
                    guard digit >= 48 && digit <= 57 else { break }
                    ms = ms * 10 + Double(digit - 48)
                }
                onFrame(ms, line[4...])
            } else if !sawStop, line.count > Self.stop.count, line.starts(with: Array("data: ".utf8)) {
                sawStop = Self.contains(line, Self.stop)
            }
            line.removeAll(keepingCapacity: true)
        }
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        for start in stride(from: haystack.count - needle.count, through: 0, by: -1)
        where haystack[start] == needle[0] && haystack[start..<start + needle.count].elementsEqual(needle) {
            return true
        }
        return false
    }
}
