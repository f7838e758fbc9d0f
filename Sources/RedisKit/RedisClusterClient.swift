import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A client of a Redis Cluster: each command goes to the master of its keys' slot, over that master's own
/// ``RedisClient`` (a pipelined pool per master).
///
/// The topology comes from `CLUSTER SLOTS`, asked of the seeds (then of the masters known) on first use, after a
/// `MOVED` and after a node stops answering. A `MOVED` reply refreshes the topology and sends the command again; an
/// `ASK` reply sends it once to the node named, after `ASKING` (the two back to back on one connection). A command
/// whose keys are in several slots, or whose keys are not known, is refused before it is sent
/// (``RedisError/Code/crossSlot``). Scripts are loaded on each node the first time it answers `NOSCRIPT`.
///
/// The topology is also read every ``refreshInterval`` while the client is in use. A node that stops answering, or
/// a cluster that answers `CLUSTERDOWN` or `TRYAGAIN` (failing over, migrating), is retried with the topology read
/// again, for up to the command timeout, unless the command may have run. Subscriptions (``pubSub``) follow their
/// slot's master when the topology changes.
///
/// A client made with ``ReadFrom/replicas`` (``replicaReads``) sends each command to a replica of its slot's master
/// instead, on connections that sent `READONLY`, and subscribes there: what it reads a replica already has. A slot
/// whose master has no replica listed, and a command the replica did not answer, go to the master, over the
/// connections of the client that made this one.
public final class RedisClusterClient: RedisClientProtocol {
    /// Which node of a slot serves this client's commands.
    public enum ReadFrom: Sendable, Hashable {
        /// The master (every command, reads and writes).
        case masters
        /// A replica of the master, the master when it has none (for reads only: a replica refuses writes).
        case replicas
    }

    /// The configuration of the seeds; every node's client is made from the first one (credentials, timeouts, pool
    /// size), with the node's address.
    public let seeds: [RedisConfiguration]
    /// Which node of a slot serves the commands.
    public let readFrom: ReadFrom
    private let logger: Logger
    /// For a ``replicaReads`` client, the client that made it: what it sends to a master goes over that client's
    /// connections (one pool and one subscriber connection per master, not two).
    private weak let primary: RedisClusterClient?

    private struct State {
        var topology: ClusterTopology?
        var clients: [String: RedisClient] = [:]
        var closed = false
        var refresher: Task<Void, Never>?
        var topologyHandlers: [@Sendable (ClusterTopology) -> Void] = []
        var replicaReads: RedisClusterClient?
    }

    private let state = Mutex(State())
    private let subscriberBox = Mutex<RedisClusterSubscriber?>(nil)

    /// Redirects one command follows before its error is thrown.
    static let maxRedirects = 5

    /// How often the topology is read while nothing else made the client read it.
    public static let refreshInterval = Duration.seconds(5)

    /// Makes a client. It connects lazily, on the first command.
    public init(
        seeds: [RedisConfiguration], readFrom: ReadFrom = .masters,
        logger: Logger = Logger(label: "tether.redis.cluster")
    ) {
        precondition(!seeds.isEmpty, "a cluster client needs at least one seed")
        self.seeds = seeds
        self.readFrom = readFrom
        self.logger = logger
        self.primary = nil
    }

    private init(replicasOf primary: RedisClusterClient) {
        seeds = primary.seeds
        readFrom = .replicas
        logger = primary.logger
        self.primary = primary
    }

    /// A client of the same cluster that reads from replicas (``ReadFrom/replicas``), made on first use and shut down
    /// with this one; this client itself when it reads from replicas already.
    public var replicaReads: any RedisClientProtocol {
        if readFrom == .replicas { return self }
        return state.withLock { state in
            if let made = state.replicaReads { return made }
            let made = RedisClusterClient(replicasOf: self)
            state.replicaReads = made
            return made
        }
    }

    /// The topology last read (`nil` before the first command).
    public var topology: ClusterTopology? { state.withLock { $0.topology } }

    /// Always `true`.
    public var isCluster: Bool { true }

    /// The first seed's event loops (every node's client uses them).
    public var eventLoopGroup: any EventLoopGroup { seeds[0].eventLoopGroup }

    /// Reads the topology again, from the masters known (then the seeds), and keeps it; the handlers of
    /// ``onTopologyChange(_:)`` hear of it when it changed.
    @discardableResult
    public func refreshTopology() async throws -> ClusterTopology {
        // A replica reader asks its primary: the topology is the cluster's, and what goes to a master goes over the
        // primary's connections (a reader of its own opened a READONLY connection to a seed master for this).
        if let primary { return adopt(try await primary.refreshTopology()) }
        var candidates: [RedisConfiguration.Endpoint] = []
        if let known = topology {
            for range in known.ranges {
                candidates.append(.tcp(host: range.master.host, port: range.master.port))
                candidates += range.replicas.map { .tcp(host: $0.host, port: $0.port) }
            }
        }
        candidates += seeds.map(\.endpoint)
        var lastError: any Error = RedisError(.unavailable, "no cluster node answered CLUSTER SLOTS")
        var asked = Set<String>()
        for endpoint in candidates {
            guard case .tcp(let host, let port) = endpoint, asked.insert("\(host):\(port)").inserted else { continue }
            do {
                let reply = try await client(host: host, port: port).send("CLUSTER", "SLOTS")
                let topology = try ClusterTopology(slots: reply, answeredBy: .init(host: host, port: port))
                guard topology.uncoveredSlots == 0 || self.topology == nil else {
                    // A node that lost its masters' slots (failing over) knows less than we do: ask another.
                    lastError = RedisError(.unavailable, "\(host):\(port) serves only part of the slots")
                    continue
                }
                return adopt(topology)
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Keeps `topology` as this client's, starts the periodic refresh, and tells the handlers of
    /// ``onTopologyChange(_:)`` when it changed.
    private func adopt(_ topology: ClusterTopology) -> ClusterTopology {
        let (changed, handlers) = state.withLock { state in
            let changed = state.topology.map { $0.ranges != topology.ranges } ?? false
            state.topology = topology
            if state.refresher == nil, !state.closed { state.refresher = startRefreshing() }
            return (changed, state.topologyHandlers)
        }
        if changed {
            logger.info("cluster topology changed: \(topology.masters.count) masters")
            for handler in handlers { handler(topology) }
        }
        return topology
    }

    /// Registers a handler called (in the task that read it) with each new topology that differs from the last.
    public func onTopologyChange(_ handler: @escaping @Sendable (ClusterTopology) -> Void) {
        state.withLock { $0.topologyHandlers.append(handler) }
    }

    private func startRefreshing() -> Task<Void, Never> {
        Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: Self.refreshInterval)
                guard let self, !Task.isCancelled else { return }
                _ = try? await self.refreshTopology()
            }
        }
    }

    /// Sends one command to the master of its keys' slot (any master for a command without keys).
    @discardableResult
    public func send(_ command: RedisCommand) async throws -> RESPValue {
        try await routed(command, script: nil)
    }

    /// Sends each command to the master of its slot: the commands of one master pipelined together, the masters
    /// concurrently. A command answered with a redirect is sent again on its own (routed like ``send(_:)``).
    @discardableResult
    public func send(batch commands: [RedisCommand]) async throws -> [RESPValue] {
        let slots = try commands.map { try $0.slot() }
        var groups: [ClusterTopology.Node: [Int]] = [:]
        for (index, slot) in slots.enumerated() {
            groups[try await node(for: slot), default: []].append(index)
        }
        var replies = [RESPValue](repeating: .null, count: commands.count)
        try await withThrowingTaskGroup(of: [(Int, RESPValue)].self) { group in
            for (node, indices) in groups {
                group.addTask {
                    let batch = indices.map { commands[$0] }
                    let answers: [RESPValue]
                    do {
                        answers = try await self.client(host: node.host, port: node.port).send(batch: batch)
                    } catch let error as RedisError where Self.isTransient(error) {
                        // That master is away: each command goes on its own, through failover.
                        var one: [(Int, RESPValue)] = []
                        for index in indices { one.append((index, try await self.send(commands[index]))) }
                        return one
                    }
                    var out: [(Int, RESPValue)] = []
                    for (index, answer) in zip(indices, answers) {
                        if case .error(let message) = answer,
                            ClusterRedirect(RedisError(reply: message)) != nil
                                || RedisError(reply: message).code == .unavailable
                        {
                            out.append((index, (try? await self.send(commands[index])) ?? answer))
                        } else {
                            out.append((index, answer))
                        }
                    }
                    return out
                }
            }
            for try await answered in group { for (index, reply) in answered { replies[index] = reply } }
        }
        return replies
    }

    /// Runs a script with `EVALSHA` on the master of its keys' slot (all of `keys` must share one), loading it there
    /// first when that node does not know it.
    @discardableResult
    public func run(_ script: RedisScript, keys: [String], arguments: [any RedisArgument]) async throws -> RESPValue {
        try await routed(RedisClient.evalsha(script, keys: keys, arguments: arguments), script: script)
    }

    /// Sends one command without suspending the caller: straight to its master's pool when the topology is known,
    /// through ``send(_:)`` in a task after a redirect or a node failure (or before the topology is known).
    public func submit(_ command: RedisCommand, script: RedisScript?) -> EventLoopFuture<RESPValue> {
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? seeds[0].eventLoopGroup.any()
        let slot: Int?
        do { slot = try command.slot() } catch { return loop.makeFailedFuture(error) }
        guard let topology, let node = serving(slot, in: topology),
            let client = try? client(host: node.host, port: node.port)
        else {
            return loop.makeFutureWithTask { try await self.routed(command, script: script) }
        }
        return client.submit(command, script: script).flatMapError { error in
            guard let error = error as? RedisError, ClusterRedirect(error) != nil || Self.isTransient(error) else {
                return loop.makeFailedFuture(error)
            }
            return loop.makeFutureWithTask { try await self.routed(command, script: script) }
        }
    }

    /// Sends one command to every master (`CONFIG SET`, `INFO`, `SCRIPT FLUSH`...); their replies, in the order of
    /// ``ClusterTopology/masters``, error replies included.
    public func sendToMasters(_ command: RedisCommand) async throws -> [RESPValue] {
        let masters = (try await refreshTopology()).masters
        var replies: [RESPValue] = []
        for master in masters {
            do {
                replies.append(try await client(host: master.host, port: master.port).send(command))
            } catch let error as RedisError where error.code == .serverError {
                replies.append(.error(error.message))
            }
        }
        return replies
    }

    /// A connection of the caller's own to the master that serves `key` now (it is not redirected: a caller that
    /// gets `MOVED` on it opens another).
    public func dedicatedConnection(forKey key: String) async throws -> RedisConnection {
        let node = try await master(for: ClusterSlot.of(key))
        return try await client(host: node.host, port: node.port).dedicatedConnection()
    }

    /// Subscriptions, each on the master of its slot (``RedisClusterSubscriber``).
    public var pubSub: any RedisPubSub { subscriber }

    /// The cluster's subscriber, made on first use.
    public var subscriber: RedisClusterSubscriber {
        subscriberBox.withLock { box in
            if let existing = box { return existing }
            let made = RedisClusterSubscriber(cluster: self, logger: logger)
            box = made
            return made
        }
    }

    /// Closes every node's connections.
    public func shutdown() {
        let (clients, refresher, replicaReads) = state.withLock {
            state -> ([RedisClient], Task<Void, Never>?, RedisClusterClient?) in
            state.closed = true
            defer { state.refresher = nil }
            return (Array(state.clients.values), state.refresher, state.replicaReads)
        }
        refresher?.cancel()
        replicaReads?.shutdown()
        subscriberBox.withLock { $0 }?.shutdown()
        for client in clients { client.shutdown() }
    }

    // MARK: - Routing

    /// Whether an error says the command did not run and a node is away or the cluster is changing (retry later).
    static func isTransient(_ error: RedisError) -> Bool {
        error.code == .unavailable || (error.code == .connectionClosed && !error.commandMayHaveRun)
    }

    private func routed(_ command: RedisCommand, script: RedisScript?) async throws -> RESPValue {
        let slot = try command.slot()
        var asking: ClusterTopology.Node?
        var redirects = 0
        var failures = 0
        // After a replica did not answer, the command goes to the master.
        var masterOnly = readFrom == .masters
        let deadline = ContinuousClock.now + .nanoseconds(seeds[0].commandTimeout.nanoseconds)
        while true {
            let node: ClusterTopology.Node
            do {
                if let asking {
                    node = asking
                } else {
                    node = masterOnly ? try await master(for: slot) : try await self.node(for: slot)
                }
            } catch let error as RedisError where Self.isTransient(error) && ContinuousClock.now < deadline {
                failures += 1
                try await Task.sleep(for: .milliseconds(min(100 * failures, 500)))
                continue
            }
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
                if let redirect = ClusterRedirect(error) {
                    redirects += 1
                    guard redirects <= Self.maxRedirects else { throw error }
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
                // A node that does not answer may be failing over: read the topology again and retry, until the
                // command timeout, unless the command may have run there. A replica only runs reads (it refuses
                // writes): one whose connection closed under the command may have run it, and the master runs it
                // again.
                let onReplica =
                    !masterOnly
                    && topology.map { topology in slot.flatMap { topology.master(forSlot: $0) } != node }
                        ?? false
                guard Self.isTransient(error) || (onReplica && error.code == .connectionClosed),
                    ContinuousClock.now < deadline
                else { throw error }
                failures += 1
                if onReplica {
                    // A replica that does not answer: the master serves the command now.
                    masterOnly = true
                    asking = nil
                    continue
                }
                asking = nil
                logger.debug("\(node) did not serve \(command.name): \(error); retrying")
                try await Task.sleep(for: .milliseconds(min(100 * failures, 500)))
                _ = try? await refreshTopology()
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
    func master(for slot: Int?) async throws -> ClusterTopology.Node {
        if let topology, let node = slot.map({ topology.master(forSlot: $0) }) ?? topology.masters.first {
            return node
        }
        let topology = try await refreshTopology()
        guard let node = slot.map({ topology.master(forSlot: $0) }) ?? topology.masters.first else {
            throw RedisError(.unavailable, "no master serves slot \(slot.map(String.init) ?? "-")")
        }
        return node
    }

    /// The node that serves `slot` for this client (see ``readFrom``), reading the topology when none is known.
    func node(for slot: Int?) async throws -> ClusterTopology.Node {
        if readFrom == .masters { return try await master(for: slot) }
        if let topology, let node = serving(slot, in: topology) { return node }
        guard let node = serving(slot, in: try await refreshTopology()) else { return try await master(for: slot) }
        return node
    }

    /// The node of `topology` that serves `slot` for this client (any master for `nil`).
    func serving(_ slot: Int?, in topology: ClusterTopology) -> ClusterTopology.Node? {
        guard let slot else { return topology.masters.first }
        if readFrom == .replicas, let replica = topology.replicas(forSlot: slot).first { return replica }
        return topology.master(forSlot: slot)
    }

    /// The client of one node, made on first use; a replica reader's client of a master is its primary's.
    func client(host: String, port: Int) throws -> RedisClient {
        if let primary, let topology, topology.masters.contains(where: { $0.host == host && $0.port == port }) {
            return try primary.client(host: host, port: port)
        }
        return try state.withLock { state in
            guard !state.closed else { throw RedisError(.poolClosed, "the cluster client was shut down") }
            let name = "\(host):\(port)"
            if let client = state.clients[name] { return client }
            var configuration = seeds[0]
            configuration.endpoint = .tcp(host: host, port: port)
            configuration.readOnly = readFrom == .replicas
            let client = RedisClient(configuration: configuration, logger: logger)
            state.clients[name] = client
            return client
        }
    }
}
