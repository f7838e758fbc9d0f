import Logging
import Synchronization

/// A client of a Redis Cluster: each command goes to the master of its keys' slot, over that master's own
/// ``RedisClient`` (a pipelined pool per master).
///
/// The topology comes from `CLUSTER SLOTS`, asked of the seeds (then of the masters known) on first use, after a
/// `MOVED` and after a node stops answering. A `MOVED` reply refreshes the topology and sends the command again; an
/// `ASK` reply sends it once to the node named, after `ASKING` (the two back to back on one connection). A command
/// whose keys are in several slots, or whose keys are not known, is refused before it is sent
/// (``RedisError/Code/crossSlot``). Scripts are loaded on each node the first time it answers `NOSCRIPT`.
public final class RedisClusterClient: Sendable {
    /// The configuration of the seeds; every node's client is made from the first one (credentials, timeouts, pool
    /// size), with the node's address.
    public let seeds: [RedisConfiguration]
    private let logger: Logger

    private struct State {
        var topology: ClusterTopology?
        var clients: [String: RedisClient] = [:]
        var closed = false
    }

    private let state = Mutex(State())

    /// Redirects and node failures one command goes through before its error is thrown.
    static let maxRedirects = 5

    /// Makes a client. It connects lazily, on the first command.
    public init(seeds: [RedisConfiguration], logger: Logger = Logger(label: "tether.redis.cluster")) {
        precondition(!seeds.isEmpty, "a cluster client needs at least one seed")
        self.seeds = seeds
        self.logger = logger
    }

    /// The topology last read (`nil` before the first command).
    public var topology: ClusterTopology? { state.withLock { $0.topology } }

    /// Reads the topology again, from the masters known (then the seeds), and keeps it.
    @discardableResult
    public func refreshTopology() async throws -> ClusterTopology {
        var candidates: [RedisConfiguration.Endpoint] = []
        if let known = topology { candidates += known.masters.map { .tcp(host: $0.host, port: $0.port) } }
        candidates += seeds.map(\.endpoint)
        var lastError: any Error = RedisError(.unavailable, "no cluster node answered CLUSTER SLOTS")
        for endpoint in candidates {
            guard case .tcp(let host, let port) = endpoint else { continue }
            do {
                let reply = try await client(host: host, port: port).send("CLUSTER", "SLOTS")
                let topology = try ClusterTopology(slots: reply, answeredBy: .init(host: host, port: port))
                state.withLock { $0.topology = topology }
                return topology
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Sends one command to the master of its keys' slot (any master for a command without keys).
    @discardableResult
    public func send(_ command: RedisCommand) async throws -> RESPValue {
        try await routed(command, script: nil)
    }

    /// Sends one command given inline.
    @discardableResult
    public func send(_ name: String, _ arguments: any RedisArgument...) async throws -> RESPValue {
        try await send(RedisCommand(name, arguments: arguments))
    }

    /// Runs a script with `EVALSHA` on the master of its keys' slot (all of `keys` must share one), loading it there
    /// first when that node does not know it.
    @discardableResult
    public func run(_ script: RedisScript, keys: [String], arguments: [any RedisArgument]) async throws -> RESPValue {
        try await routed(RedisClient.evalsha(script, keys: keys, arguments: arguments), script: script)
    }

    /// Closes every node's connections.
    public func shutdown() {
        let clients = state.withLock { state -> [RedisClient] in
            state.closed = true
            return Array(state.clients.values)
        }
        for client in clients { client.shutdown() }
    }

    // MARK: - Routing

    private func routed(_ command: RedisCommand, script: RedisScript?) async throws -> RESPValue {
        let slot = try command.slot()
        var asking: ClusterTopology.Node?
        var attempt = 0
        while true {
            let node: ClusterTopology.Node
            if let asking { node = asking } else { node = try await master(for: slot) }
            let client = try client(host: node.host, port: node.port)
            do {
                if asking != nil {
                    return try await sendAsking(command, script: script, to: client)
                }
                if let script {
                    return try await client.run(script, command: command)
                }
                return try await client.send(command)
            } catch let error as RedisError {
                attempt += 1
                guard attempt <= Self.maxRedirects else { throw error }
                if let redirect = ClusterRedirect(error) {
                    let host = redirect.host.isEmpty ? node.host : redirect.host
                    switch redirect.kind {
                    case .moved:
                        logger.debug("slot \(redirect.slot) moved to \(host):\(redirect.port)")
                        asking = nil
                        try await refreshTopology()
                    case .ask:
                        asking = ClusterTopology.Node(host: host, port: redirect.port)
                    }
                    continue
                }
                // A node that does not answer may have failed over: read the topology again and retry, unless the
                // command may have run there.
                if error.code == .unavailable || (error.code == .connectionClosed && !error.commandMayHaveRun) {
                    asking = nil
                    _ = try? await refreshTopology()
                    try await Task.sleep(for: .milliseconds(100 * attempt))
                    continue
                }
                throw error
            }
        }
    }

    /// `ASKING` and the command, back to back on one connection (the flag holds for the next command only).
    private func sendAsking(_ command: RedisCommand, script: RedisScript?, to client: RedisClient) async throws
        -> RESPValue
    {
        var replies = try await client.send(batch: [RedisCommand("ASKING"), command])
        if let script, case .error(let message) = replies[1], message.hasPrefix("NOSCRIPT") {
            _ = try await client.send("SCRIPT", "LOAD", script.source)
            replies = try await client.send(batch: [RedisCommand("ASKING"), command])
        }
        if case .error(let message) = replies[1] { throw RedisError(reply: message) }
        return replies[1]
    }

    /// The master of `slot` (any master for `nil`), reading the topology when none is known or no node serves it.
    private func master(for slot: Int?) async throws -> ClusterTopology.Node {
        if let topology, let node = slot.map({ topology.master(forSlot: $0) }) ?? topology.masters.first {
            return node
        }
        let topology = try await refreshTopology()
        guard let node = slot.map({ topology.master(forSlot: $0) }) ?? topology.masters.first else {
            throw RedisError(.unavailable, "no master serves slot \(slot.map(String.init) ?? "-")")
        }
        return node
    }

    private func client(host: String, port: Int) throws -> RedisClient {
        try state.withLock { state in
            guard !state.closed else { throw RedisError(.poolClosed, "the cluster client was shut down") }
            let name = "\(host):\(port)"
            if let client = state.clients[name] { return client }
            var configuration = seeds[0]
            configuration.endpoint = .tcp(host: host, port: port)
            let client = RedisClient(configuration: configuration, logger: logger)
            state.clients[name] = client
            return client
        }
    }
}
