import Logging
import Synchronization

/// Subscriptions on a Redis Cluster: a shard channel (`SSUBSCRIBE`) is subscribed on the master of its slot, over
/// that master's one pub/sub connection (``RedisSubscriber``), so there is one such connection per master that has
/// subscribers. Channels and patterns (`SUBSCRIBE`, `PSUBSCRIBE`, which a cluster broadcasts) go to the first master.
/// The subscriber of a client that reads from replicas subscribes on a replica of the slot's master instead (a
/// master passes its shard channels' messages on to its replicas, after what came before them).
///
/// When the topology changes (a failover, a slot migrated) the subscriptions whose slot has another master now are
/// made there and dropped from the old one, then the ``onResubscribe(_:)`` handlers run: messages published in
/// between are lost. A node's pub/sub connection that drops, or a shard channel the server drops (its slot moved),
/// makes the cluster client read the topology again.
public final class RedisClusterSubscriber: RedisPubSub {
    private struct Registration {
        var name: String
        var kind: RedisSubscriptionKind
        var node: ClusterTopology.Node
        var handler: @Sendable (RedisPubSubMessage) -> Void
        var inner: RedisSubscriptionHandle
    }

    private struct State {
        var registrations: [UInt64: Registration] = [:]
        var nextID: UInt64 = 0
        var hooked: Set<String> = []
        var resubscribeHandlers: [@Sendable () -> Void] = []
        var moving = false
        var closed = false
    }

    /// The client that owns this subscriber (weak: the subscriber's tasks may outlive it).
    private weak let cluster: RedisClusterClient?
    private let logger: Logger
    private let state = Mutex(State())

    init(cluster: RedisClusterClient, logger: Logger) {
        self.cluster = cluster
        self.logger = logger
        cluster.onTopologyChange { [weak self] topology in
            guard let self else { return }
            Task { await self.follow(topology) }
        }
    }

    /// The number of subscriptions (each local subscriber counts once per channel, as on one server).
    public var subscribedCount: Int {
        state.withLock { state in
            Set(state.registrations.values.map { "\($0.kind)\u{1F}\($0.name)" }).count
        }
    }

    /// Registers a handler called after subscriptions were restored: a node's reconnect, or subscriptions moved to
    /// their slot's new master.
    public func onResubscribe(_ handler: @escaping @Sendable () -> Void) {
        state.withLock { $0.resubscribeHandlers.append(handler) }
    }

    /// Subscribes on the master of the channel's slot; the messages come as an `AsyncSequence`.
    public func subscribe(
        _ name: String, kind: RedisSubscriptionKind,
        bufferingPolicy: AsyncStream<RedisPubSubMessage>.Continuation.BufferingPolicy
    ) async throws -> RedisSubscription {
        let (stream, continuation) = AsyncStream.makeStream(
            of: RedisPubSubMessage.self, bufferingPolicy: bufferingPolicy)
        do {
            let handle = try await subscribe(name, kind: kind) { continuation.yield($0) }
            continuation.onTermination = { _ in handle.cancel() }
        } catch {
            continuation.finish()
            throw error
        }
        return RedisSubscription(stream: stream, continuation: continuation)
    }

    /// Subscribes on the master of the channel's slot; each message is handed to `handler` on that connection's
    /// event loop.
    public func subscribe(
        _ name: String, kind: RedisSubscriptionKind, handler: @escaping @Sendable (RedisPubSubMessage) -> Void
    ) async throws -> RedisSubscriptionHandle {
        guard let cluster else { throw RedisError(.poolClosed, "the cluster client was shut down") }
        let node = try await cluster.node(for: kind == .shard ? ClusterSlot.of(name) : nil)
        let inner = try await nodeSubscriber(node).subscribe(name, kind: kind, handler: handler)
        let id = state.withLock { state -> UInt64? in
            guard !state.closed else { return nil }
            state.nextID += 1
            state.registrations[state.nextID] = Registration(
                name: name, kind: kind, node: node, handler: handler, inner: inner)
            return state.nextID
        }
        guard let id else {
            inner.cancel()
            throw RedisError(.poolClosed, "subscriber shut down")
        }
        return RedisSubscriptionHandle { [weak self] in
            self?.state.withLock { $0.registrations.removeValue(forKey: id) }?.inner.cancel()
        }
    }

    /// Ends every subscription (the node clients close their connections).
    func shutdown() {
        let registrations = state.withLock { state in
            state.closed = true
            defer { state.registrations = [:] }
            return Array(state.registrations.values)
        }
        for registration in registrations { registration.inner.cancel() }
    }

    /// The pub/sub connection of `node`, with this subscriber's hooks on it.
    private func nodeSubscriber(_ node: ClusterTopology.Node) throws -> RedisSubscriber {
        guard let cluster else { throw RedisError(.poolClosed, "the cluster client was shut down") }
        let subscriber = try cluster.client(host: node.host, port: node.port).subscriber
        let isNew = state.withLock { $0.hooked.insert("\(node.host):\(node.port)").inserted }
        if isNew {
            subscriber.onResubscribe { [weak self] in self?.resubscribed() }
            subscriber.onLost { [weak self] in self?.lost() }
        }
        return subscriber
    }

    private func resubscribed() {
        for handler in state.withLock({ $0.resubscribeHandlers }) { handler() }
    }

    /// A node's subscriptions were lost: read the topology until it changes (a failover) or the node is back.
    private func lost() {
        Task { [weak self] in
            for attempt in 1...20 {
                guard let self, let cluster = self.cluster, !self.state.withLock({ $0.closed }) else { return }
                let before = cluster.topology
                if let after = try? await cluster.refreshTopology(), after != before { return }
                try? await Task.sleep(for: .milliseconds(250 * attempt))
                // A node that came back restores its own subscriptions (and says so through `resubscribed`); one
                // whose slots moved shows in the topology, which calls `follow`.
                if let topology = cluster.topology { await self.follow(topology) }
            }
        }
    }

    /// Moves every subscription whose slot has another master in `topology` to that master.
    private func follow(_ topology: ClusterTopology) async {
        let misplaced = state.withLock { state -> [(UInt64, Registration, ClusterTopology.Node)] in
            guard !state.closed, !state.moving else { return [] }
            var misplaced: [(UInt64, Registration, ClusterTopology.Node)] = []
            for (id, registration) in state.registrations {
                let slot = registration.kind == .shard ? ClusterSlot.of(registration.name) : nil
                guard let master = cluster?.serving(slot, in: topology) else { continue }
                if master.host != registration.node.host || master.port != registration.node.port {
                    misplaced.append((id, registration, master))
                }
            }
            if !misplaced.isEmpty { state.moving = true }
            return misplaced
        }
        guard !misplaced.isEmpty else { return }
        defer { state.withLock { $0.moving = false } }
        logger.info("moving \(misplaced.count) subscriptions to their slots' new masters")
        for (id, registration, master) in misplaced {
            do {
                let inner = try await nodeSubscriber(master).subscribe(
                    registration.name, kind: registration.kind, handler: registration.handler)
                let old = state.withLock { state -> RedisSubscriptionHandle? in
                    guard var current = state.registrations[id] else { return inner }
                    let old = current.inner
                    current.inner = inner
                    current.node = master
                    state.registrations[id] = current
                    return old
                }
                old?.cancel()
            } catch {
                logger.warning("could not subscribe to \(registration.name) on \(master): \(error)")
            }
        }
        resubscribed()
    }
}
