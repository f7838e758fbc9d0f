import NIOCore

/// What Tether asks of Redis, whether it is one server (``RedisClient``) or a cluster (``RedisClusterClient``): the
/// same calls, so the code above does not know which it talks to.
///
/// On a cluster every command goes to the master of its keys' slot, and a command whose keys span slots is refused
/// before it is sent (``RedisError/Code/crossSlot``); a batch may then hold commands for several masters (each
/// group is pipelined to its master; the replies come back in the batch's order). On one server none of this
/// applies.
public protocol RedisClientProtocol: Sendable {
    /// Sends one command and returns its reply (see ``RedisClient/send(_:)`` for the errors).
    @discardableResult
    func send(_ command: RedisCommand) async throws -> RESPValue

    /// Sends many commands pipelined and awaits all replies; error replies stay in the array as
    /// ``RESPValue/error(_:)``. It is not a transaction: other clients' commands may run in between.
    @discardableResult
    func send(batch commands: [RedisCommand]) async throws -> [RESPValue]

    /// Runs a script with `EVALSHA`, loading it where it is not known (`NOSCRIPT`).
    @discardableResult
    func run(_ script: RedisScript, keys: [String], arguments: [any RedisArgument]) async throws -> RESPValue

    /// Sends one command without suspending the caller (for code driven by event-loop callbacks); with `script`,
    /// the command is its `EVALSHA`, and a node that does not know the script gets it loaded.
    func submit(_ command: RedisCommand, script: RedisScript?) -> EventLoopFuture<RESPValue>

    /// Opens a connection of the caller's own (who closes it), to the server that holds `key`: for a loop of
    /// blocking reads of that key.
    func dedicatedConnection(forKey key: String) async throws -> RedisConnection

    /// Subscriptions: on a cluster, a shard channel is subscribed on the master of its slot.
    var pubSub: any RedisPubSub { get }

    /// Whether this is a cluster (where keys of several slots never meet in one command).
    var isCluster: Bool { get }

    /// A client for reads that should see only what a replica has too (what survives a failover): on a cluster, one
    /// that reads from replicas (``RedisClusterClient/replicaReads``); on one server, this client.
    var replicaReads: any RedisClientProtocol { get }

    /// The event loops replies complete on.
    var eventLoopGroup: any EventLoopGroup { get }

    /// Closes every connection.
    func shutdown()
}

extension RedisClientProtocol {
    /// Sends one command given inline: `try await redis.send("HSET", key, "field", value)`.
    @discardableResult
    public func send(_ name: String, _ arguments: any RedisArgument...) async throws -> RESPValue {
        try await send(RedisCommand(name, arguments: arguments))
    }

    /// Sends one command without suspending the caller (see ``submit(_:script:)``).
    public func submit(_ command: RedisCommand) -> EventLoopFuture<RESPValue> {
        submit(command, script: nil)
    }

    /// Runs a script like ``run(_:keys:arguments:)`` without suspending the caller.
    public func submit(_ script: RedisScript, keys: [String], arguments: [any RedisArgument]) -> EventLoopFuture<
        RESPValue
    > {
        submit(RedisClient.evalsha(script, keys: keys, arguments: arguments), script: script)
    }
}

/// Subscriptions to channels, patterns and shard channels (see ``RedisSubscriber``).
public protocol RedisPubSub: Sendable {
    /// Subscribes and returns once Redis has confirmed it; the messages come as an `AsyncSequence`.
    func subscribe(
        _ name: String, kind: RedisSubscriptionKind,
        bufferingPolicy: AsyncStream<RedisPubSubMessage>.Continuation.BufferingPolicy
    ) async throws -> RedisSubscription

    /// Subscribes and returns once Redis has confirmed it; each message is handed to `handler` on the connection's
    /// event loop.
    func subscribe(
        _ name: String, kind: RedisSubscriptionKind, handler: @escaping @Sendable (RedisPubSubMessage) -> Void
    ) async throws -> RedisSubscriptionHandle

    /// Registers a handler called after subscriptions were restored (a reconnect, or a slot that moved): messages
    /// published in between are lost.
    func onResubscribe(_ handler: @escaping @Sendable () -> Void)

    /// The number of channels, patterns and shard channels with at least one local subscriber.
    var subscribedCount: Int { get }
}

extension RedisPubSub {
    /// Subscribes to a channel (or `kind`), with unbounded buffering.
    public func subscribe(_ name: String, kind: RedisSubscriptionKind = .channel) async throws -> RedisSubscription {
        try await subscribe(name, kind: kind, bufferingPolicy: .unbounded)
    }
}

extension RedisClient: RedisClientProtocol {
    /// The client's one pub/sub connection (``subscriber``).
    public var pubSub: any RedisPubSub { subscriber }

    /// Always `false`.
    public var isCluster: Bool { false }

    /// This client (one server has no replicas it knows of).
    public var replicaReads: any RedisClientProtocol { self }

    /// The configuration's event loops.
    public var eventLoopGroup: any EventLoopGroup { configuration.eventLoopGroup }

    /// A connection outside the pool (one server holds every key).
    public func dedicatedConnection(forKey key: String) async throws -> RedisConnection {
        try await dedicatedConnection()
    }
}

extension RedisSubscriber: RedisPubSub {}
