import Foundation

/// CPU seconds, from `/proc`, of the processes a stream benchmark watches: the gateway, the worker, each Redis node
/// and the benchmark's own clients.
struct CPUSnapshot {
    var gateway: Double?
    var worker: Double?
    /// One per `--redis-pid`, `nil` for a node that is gone (killed in a failover run).
    var nodes: [Double?]
    var clients: Double?

    init(_ bench: StreamBench) {
        gateway = bench.gatewayPid.flatMap(ProcessStats.cpuSeconds)
        worker = bench.workerPid.flatMap(ProcessStats.cpuSeconds)
        nodes = bench.redisPid.map(ProcessStats.cpuSeconds)
        clients = ProcessStats.cpuSeconds(Int(getpid()))
    }

    /// Prints and records (`cpu.<process>`) each process's CPU since `before`: seconds, share of one core over
    /// `seconds`, and microseconds per one of `events` (left out when there are none). On a cluster also the busiest
    /// node's: it bounds what Redis can carry, and it is what more masters divide.
    func report(since before: CPUSnapshot, seconds: Double, events: Int, into report: inout BenchReport) {
        let nodesUsed = zip(before.nodes, nodes).map { earlier, later in
            earlier.flatMap { earlier in later.map { $0 - earlier } }
        }
        let redis = nodesUsed.contains { $0 == nil } || nodesUsed.isEmpty ? nil : nodesUsed.reduce(0) { $0 + $1! }
        let redisName = nodes.count > 1 ? "redis-server (\(nodes.count) nodes)" : "redis-server"
        var rows: [(key: String, name: String, used: Double?)] = [
            ("gateway", "gateway", Self.used(before.gateway, gateway)),
            ("worker", "worker", Self.used(before.worker, worker)),
            ("redis", redisName, redis),
            ("clients", "clients (this benchmark)", Self.used(before.clients, clients)),
        ]
        if nodes.count > 1 {
            rows.append(("busiestRedisNode", "busiest redis-server node", nodesUsed.compactMap { $0 }.max()))
        }
        for row in rows {
            guard let used = row.used else { continue }
            report.set("cpu.\(row.key).seconds", used)
            report.set("cpu.\(row.key).percentOfCore", used / seconds * 100)
            var line = String(format: "  %@ CPU: %.2f s (%.1f%% of one core)", row.name, used, used / seconds * 100)
            if events > 0 {
                let perEvent = used / Double(events) * 1e6
                report.set("cpu.\(row.key).microsecondsPerEvent", perEvent)
                line += String(format: ", %.1f µs per delivered event", perEvent)
            }
            report.line(line)
        }
    }

    private static func used(_ before: Double?, _ after: Double?) -> Double? {
        guard let before, let after else { return nil }
        return after - before
    }
}
