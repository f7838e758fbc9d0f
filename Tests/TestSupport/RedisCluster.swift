import Foundation
import RedisKit

#if canImport(Glibc)
    import Glibc
#endif

/// A throwaway Redis Cluster: `masters` redis-servers (and `replicas` per master) with `--cluster-enabled yes` on
/// free loopback ports, joined by `redis-cli --cluster create`; ready when every node says `cluster_state:ok`.
public final class RedisCluster: @unchecked Sendable {
    /// Every node, masters first (as `redis-cli --cluster create` was given them).
    public let nodes: [RedisServer]

    /// Starts and joins the nodes.
    public init(masters: Int = 3, replicas: Int = 0) async throws {
        var nodes: [RedisServer] = []
        for _ in 0..<(masters * (1 + replicas)) {
            nodes.append(
                try RedisServer(
                    port: try Self.nodePort(),
                    arguments: [
                        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout",
                        "2000",
                    ]))
        }
        self.nodes = nodes
        let create = Process()
        create.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        create.arguments =
            ["redis-cli", "--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" }
            + ["--cluster-replicas", String(replicas), "--cluster-yes"]
        let output = Pipe()
        create.standardOutput = output
        create.standardError = output
        try create.run()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        create.waitUntilExit()
        guard create.terminationStatus == 0 else {
            throw RedisError(
                .unavailable, "redis-cli --cluster create exited with \(create.terminationStatus): \(said.suffix(600))")
        }
        let urls = nodes.map(\.url)
        let ready = try await eventually(20) {
            for url in urls {
                let client = RedisClient(configuration: try RedisConfiguration(url: url))
                defer { client.shutdown() }
                let info = (try? await client.send("CLUSTER", "INFO"))?.string ?? ""
                if !info.contains("cluster_state:ok") { return false }
            }
            return true
        }
        guard ready else { throw RedisError(.unavailable, "the cluster did not reach cluster_state:ok") }
        // Replicas are attached after the cluster says ok: wait until each one is in sync with its master, or a master
        // killed now has no replica to fail over to.
        if replicas > 0 {
            let synced = try await eventually(20) {
                var inSync = 0
                for url in urls {
                    let client = RedisClient(configuration: try RedisConfiguration(url: url))
                    defer { client.shutdown() }
                    let info = (try? await client.send("INFO", "replication"))?.string ?? ""
                    if info.contains("role:slave"), info.contains("master_link_status:up"),
                        info.contains("master_sync_in_progress:0")
                    {
                        inSync += 1
                    }
                }
                return inSync == masters * replicas
            }
            guard synced else { throw RedisError(.unavailable, "the cluster's replicas did not sync") }
            // CLUSTER SLOTS lists a replica only once it has replicated something: write a key on every master.
            let seed = RedisClient(configuration: try RedisConfiguration(url: urls[0]))
            defer { seed.shutdown() }
            let topology = try ClusterTopology(
                slots: try await seed.send("CLUSTER", "SLOTS"),
                answeredBy: .init(host: "127.0.0.1", port: nodes[0].port))
            for range in topology.ranges {
                let key = (0...).lazy.map { "{replicated-\($0)}" }.first { range.slots.contains(ClusterSlot.of($0)) }!
                let master = RedisClient(
                    configuration: try RedisConfiguration(url: "redis://127.0.0.1:\(range.master.port)"))
                defer { master.shutdown() }
                try await master.send("SET", key, "1")
            }
            let listed = try await eventually(20) {
                let reply = try await seed.send("CLUSTER", "SLOTS")
                let topology = try ClusterTopology(slots: reply, answeredBy: .init(host: "127.0.0.1", port: 0))
                return topology.ranges.allSatisfy { $0.replicas.count == replicas }
            }
            guard listed else { throw RedisError(.unavailable, "CLUSTER SLOTS did not list the replicas") }
        }
    }

    /// A port for a node: its cluster bus listens on the port + 10000, so both must be free, and both below the
    /// ephemeral range (32768 and up), where the kernel hands out ports (``freePort()``, outgoing connections): a
    /// bus port there could take the port of a server another test just stopped.
    static func nodePort() throws -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: 20000..<22700)
            if !canConnect(port: port), !canConnect(port: port + 10000) { return port }
        }
        throw RedisError(.unavailable, "no free port for a cluster node")
    }

    /// The seed URLs, one per node.
    public var urls: [String] { nodes.map(\.url) }
}
