import Logging
import NIOCore
import Synchronization

/// One message received on a subscription.
public struct RedisPubSubMessage: Sendable, Hashable {
    /// The channel the message was published on.
    public var channel: String
    /// For a pattern subscription, the pattern that matched.
    public var pattern: String?
    /// The message, as published (binary-safe).
    public var payload: [UInt8]

    /// The payload decoded as UTF-8.
    public var string: String { String(decoding: payload, as: UTF8.self) }
}

/// What a subscription listens to.
public enum RedisSubscriptionKind: Sendable, Hashable {
    /// `SUBSCRIBE channel`.
    case channel
    /// `PSUBSCRIBE pattern`.
    case pattern
    /// `SSUBSCRIBE shardchannel` (Redis 7 sharded pub/sub).
    case shard

    var subscribeCommand: String {
        switch self {
        case .channel: "SUBSCRIBE"
        case .pattern: "PSUBSCRIBE"
        case .shard: "SSUBSCRIBE"
        }
    }

    var unsubscribeCommand: String {
        switch self {
        case .channel: "UNSUBSCRIBE"
        case .pattern: "PUNSUBSCRIBE"
        case .shard: "SUNSUBSCRIBE"
        }
    }
}

/// The messages of one subscription, as an `AsyncSequence`. Iterating ends when ``cancel()`` is called or the
/// iterating task is cancelled; either unsubscribes (Redis is told once the last local subscriber of the
/// channel has left).
public struct RedisSubscription: AsyncSequence, Sendable {
    /// The element type.
    public typealias Element = RedisPubSubMessage
    let stream: AsyncStream<RedisPubSubMessage>
    let continuation: AsyncStream<RedisPubSubMessage>.Continuation

    /// The iterator.
    public func makeAsyncIterator() -> AsyncStream<RedisPubSubMessage>.AsyncIterator {
        stream.makeAsyncIterator()
    }

    /// Ends the subscription.
    public func cancel() { continuation.finish() }
}

/// A subscription made with a handler; ``cancel()`` unsubscribes (Redis is told once the last local subscriber
/// of the channel has left).
public struct RedisSubscriptionHandle: Sendable {
    let cancelBody: @Sendable () -> Void

    /// Ends the subscription.
    public func cancel() { cancelBody() }
}

/// Many subscriptions over one pub/sub connection.
///
/// - The first local subscriber of a channel sends `SUBSCRIBE` and waits for Redis's confirmation, so a message
///   published after ``subscribe(_:kind:bufferingPolicy:)`` returns is delivered; later subscribers of the same
///   channel share it; the last one to leave sends `UNSUBSCRIBE`.
/// - When the connection drops, it reconnects with backoff and subscribes again to every channel that still has
///   subscribers; then it calls the ``onResubscribe(_:)`` handlers, because messages published while it was away
///   are lost (pub/sub keeps nothing).
/// - While Redis is unreachable, a new subscribe fails at once with ``RedisError/Code/unavailable``.
public final class RedisSubscriber: Sendable {
    private struct Key: Hashable {
        var kind: RedisSubscriptionKind
        var name: String
    }

    /// Where one subscription's messages go.
    private enum Sink: Sendable {
        case stream(AsyncStream<RedisPubSubMessage>.Continuation)
        case handler(@Sendable (RedisPubSubMessage) -> Void)
    }

    private struct ConfirmWaiter {
        var id: UInt64
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var connection: RedisConnection?
        var connecting: Task<RedisConnection, any Error>?
        var subscribers: [Key: [UInt64: Sink]] = [:]
        /// SUBSCRIBE commands sent and not yet confirmed, per key.
        var inFlight: [Key: Int] = [:]
        var confirmed: Set<Key> = []
        var confirmWaiters: [Key: [ConfirmWaiter]] = [:]
        var nextID: UInt64 = 0
        var generation = 0
        var reconnecting = false
        var closed = false
        var resubscribeHandlers: [@Sendable () -> Void] = []
        var lostHandlers: [@Sendable () -> Void] = []
    }

    private let pool: RedisConnectionPool
    private let configuration: RedisConfiguration
    private let logger: Logger
    private let state = Mutex(State())

    init(pool: RedisConnectionPool, configuration: RedisConfiguration, logger: Logger) {
        self.pool = pool
        self.configuration = configuration
        self.logger = logger
    }

    /// The number of channels, patterns and shard channels with at least one local subscriber.
    public var subscribedCount: Int { state.withLock { $0.subscribers.count } }

    /// Whether the pub/sub connection is up.
    public var isConnected: Bool { state.withLock { $0.connection?.isActive ?? false } }

    /// Registers a handler called after a reconnect has restored every subscription (messages published in
    /// between are lost; re-read whatever the messages announce).
    public func onResubscribe(_ handler: @escaping @Sendable () -> Void) {
        state.withLock { $0.resubscribeHandlers.append(handler) }
    }

    /// Registers a handler called when subscriptions are lost: the connection dropped, or the server dropped a shard
    /// channel whose slot it no longer serves (``RedisClusterSubscriber`` then looks for the slot's new master).
    func onLost(_ handler: @escaping @Sendable () -> Void) {
        state.withLock { $0.lostHandlers.append(handler) }
    }

    /// Subscribes to a channel (or pattern, or shard channel) and returns once Redis has confirmed it.
    public func subscribe(
        _ name: String,
        kind: RedisSubscriptionKind = .channel,
        bufferingPolicy: AsyncStream<RedisPubSubMessage>.Continuation.BufferingPolicy = .unbounded
    ) async throws -> RedisSubscription {
        let key = Key(kind: kind, name: name)
        let (stream, continuation) = AsyncStream.makeStream(
            of: RedisPubSubMessage.self, bufferingPolicy: bufferingPolicy)
        do {
            let id = try await register(key, .stream(continuation))
            continuation.onTermination = { [weak self] _ in self?.remove(key, id) }
        } catch {
            continuation.finish()
            throw error
        }
        return RedisSubscription(stream: stream, continuation: continuation)
    }

    /// Subscribes like ``subscribe(_:kind:bufferingPolicy:)``, but each message is handed to `handler` right where
    /// it is parsed, on the connection's event loop, with no task switch: keep the handler short and non-blocking.
    /// Call ``RedisSubscriptionHandle/cancel()`` to unsubscribe.
    public func subscribe(
        _ name: String,
        kind: RedisSubscriptionKind = .channel,
        handler: @escaping @Sendable (RedisPubSubMessage) -> Void
    ) async throws -> RedisSubscriptionHandle {
        let key = Key(kind: kind, name: name)
        let id = try await register(key, .handler(handler))
        return RedisSubscriptionHandle { [weak self] in self?.remove(key, id) }
    }

    /// Adds a local subscriber; the first of its key sends SUBSCRIBE. Returns once Redis has confirmed it.
    private func register(_ key: Key, _ sink: Sink) async throws -> UInt64 {
        let connection = try await connected()
        let (id, send, isConfirmed) = state.withLock { state -> (UInt64, Bool, Bool) in
            state.nextID += 1
            let id = state.nextID
            let isNew = state.subscribers[key] == nil
            state.subscribers[key, default: [:]][id] = sink
            if isNew { state.inFlight[key, default: 0] += 1 }
            return (id, isNew, state.confirmed.contains(key))
        }
        if send { connection.writeUnanswered(RedisCommand(key.kind.subscribeCommand, key.name)) }
        if !isConfirmed {
            do {
                try await waitForConfirmation(key, on: connection)
            } catch {
                remove(key, id)
                throw error
            }
        }
        return id
    }

    /// Ends every subscription and closes the connection.
    public func shutdown() {
        let (connection, sinks, waiters) = state.withLock { state in
            state.closed = true
            let sinks = state.subscribers.values.flatMap { $0.values }
            let waiters = state.confirmWaiters.values.flatMap { $0 }
            state.subscribers = [:]
            state.confirmWaiters = [:]
            return (state.connection, sinks, waiters)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: RedisError(.poolClosed, "subscriber shut down")) }
        for case .stream(let continuation) in sinks { continuation.finish() }
        connection?.close()
    }

    // MARK: - Connection

    private func connected() async throws -> RedisConnection {
        enum Step {
            case ready(RedisConnection)
            case wait(Task<RedisConnection, any Error>)
        }
        let step = state.withLock { state -> Step in
            if let connection = state.connection, connection.isActive { return .ready(connection) }
            if let task = state.connecting { return .wait(task) }
            let task = Task { try await self.openConnection() }
            state.connecting = task
            return .wait(task)
        }
        switch step {
        case .ready(let connection): return connection
        case .wait(let task): return try await task.value
        }
    }

    /// Opens the connection, routes its pushes here, and subscribes again to every key with subscribers.
    private func openConnection() async throws -> RedisConnection {
        let connection: RedisConnection
        do {
            connection = try await pool.connectDedicated()
            try await connection.eventLoop.submit { [handler = connection.handler] in
                handler.value.pushHandler = { [weak self] reply in self?.handlePush(reply) }
            }.get()
        } catch {
            state.withLock { $0.connecting = nil }
            throw error
        }
        let generation = state.withLock { state in
            state.generation += 1
            return state.generation
        }
        let keys = state.withLock { state -> [Key] in
            state.connection = connection
            state.connecting = nil
            state.inFlight = [:]
            state.confirmed = []
            for key in state.subscribers.keys { state.inFlight[key] = 1 }
            return Array(state.subscribers.keys)
        }
        connection.closeFuture.whenComplete { [weak self] _ in self?.connectionLost(generation) }
        for kind in [RedisSubscriptionKind.channel, .pattern, .shard] {
            let names = keys.filter { $0.kind == kind }.map(\.name)
            // Shard channels of one command must share a slot (a cluster refuses the command otherwise).
            let groups = kind == .shard ? Array(Dictionary(grouping: names, by: ClusterSlot.of).values) : [names]
            for group in groups {
                // Chunks keep each command reasonable with many thousands of channels.
                for start in stride(from: 0, to: group.count, by: 1000) {
                    let chunk = group[start..<min(start + 1000, group.count)]
                    connection.writeUnanswered(RedisCommand(kind.subscribeCommand, arguments: Array(chunk)))
                }
            }
        }
        return connection
    }

    private func connectionLost(_ generation: Int) {
        let (waiters, reconnect, lost) = state.withLock { state -> ([ConfirmWaiter], Bool, [@Sendable () -> Void]) in
            guard state.generation == generation else { return ([], false, []) }
            state.connection = nil
            state.confirmed = []
            state.inFlight = [:]
            let waiters = state.confirmWaiters.values.flatMap { $0 }
            state.confirmWaiters = [:]
            let reconnect = !state.closed && !state.subscribers.isEmpty && !state.reconnecting
            if reconnect { state.reconnecting = true }
            return (waiters, reconnect, state.closed ? [] : state.lostHandlers)
        }
        for handler in lost { handler() }
        for waiter in waiters {
            waiter.continuation.resume(throwing: RedisError(.connectionClosed, "pub/sub connection closed"))
        }
        if reconnect {
            logger.warning("pub/sub connection lost; reconnecting")
            Task { await self.reconnectLoop() }
        }
    }

    private func reconnectLoop() async {
        var delay = configuration.reconnectBackoffInitial
        while true {
            let stop = state.withLock { $0.closed || $0.subscribers.isEmpty }
            if stop { break }
            do {
                let connection = try await connected()
                // Wait until every restored subscription is confirmed, then tell the handlers.
                let keys = state.withLock { Array($0.subscribers.keys) }
                for key in keys { try await waitForConfirmation(key, on: connection) }
                let handlers = state.withLock { state in
                    state.reconnecting = false
                    return state.resubscribeHandlers
                }
                logger.info("pub/sub connection restored with \(keys.count) subscriptions")
                for handler in handlers { handler() }
                return
            } catch {
                try? await Task.sleep(nanoseconds: UInt64(delay.nanoseconds))
                delay = min(delay * 2, configuration.reconnectBackoffMax)
            }
        }
        state.withLock { $0.reconnecting = false }
    }

    // MARK: - Subscriptions

    private func waitForConfirmation(_ key: Key, on connection: RedisConnection) async throws {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        let timeout = connection.eventLoop.scheduleTask(in: configuration.commandTimeout) { [weak self] in
            self?.failWaiter(key, id, RedisError(.timeout, "Redis did not confirm the subscription to \(key.name)"))
        }
        defer { timeout.cancel() }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let done = state.withLock { state -> Bool in
                if state.confirmed.contains(key) || state.subscribers[key] == nil { return true }
                state.confirmWaiters[key, default: []].append(ConfirmWaiter(id: id, continuation: continuation))
                return false
            }
            if done { continuation.resume() }
        }
    }

    private func failWaiter(_ key: Key, _ id: UInt64, _ error: RedisError) {
        let waiter = state.withLock { state -> ConfirmWaiter? in
            guard let index = state.confirmWaiters[key]?.firstIndex(where: { $0.id == id }) else { return nil }
            return state.confirmWaiters[key]?.remove(at: index)
        }
        waiter?.continuation.resume(throwing: error)
    }

    private func remove(_ key: Key, _ id: UInt64) {
        let connection = state.withLock { state -> RedisConnection? in
            guard state.subscribers[key]?.removeValue(forKey: id) != nil else { return nil }
            guard state.subscribers[key]?.isEmpty == true else { return nil }
            state.subscribers[key] = nil
            state.confirmed.remove(key)
            return state.connection
        }
        connection?.writeUnanswered(RedisCommand(key.kind.unsubscribeCommand, key.name))
    }

    /// Routes one push from the connection (on its event loop).
    private func handlePush(_ reply: RESPValue) {
        guard case .array(let parts) = reply, let type = parts.first?.string else {
            logger.warning("unexpected reply on the pub/sub connection: \(reply)")
            return
        }
        switch type {
        case "message", "smessage":
            guard parts.count == 3, let channel = parts[1].string else { return }
            deliver(
                Key(kind: type == "message" ? .channel : .shard, name: channel),
                RedisPubSubMessage(channel: channel, pattern: nil, payload: parts[2].bytes ?? []))
        case "pmessage":
            guard parts.count == 4, let pattern = parts[1].string, let channel = parts[2].string else { return }
            deliver(
                Key(kind: .pattern, name: pattern),
                RedisPubSubMessage(channel: channel, pattern: pattern, payload: parts[3].bytes ?? []))
        case "subscribe", "psubscribe", "ssubscribe":
            guard parts.count >= 2, let name = parts[1].string else { return }
            let kind: RedisSubscriptionKind = type == "subscribe" ? .channel : type == "psubscribe" ? .pattern : .shard
            confirm(Key(kind: kind, name: name))
        case "sunsubscribe":
            // Ours were taken out of the table before being sent; one still there was dropped by the server, whose
            // slot moved away.
            guard parts.count >= 2, let name = parts[1].string else { return }
            let lost = state.withLock { state -> [@Sendable () -> Void] in
                let key = Key(kind: .shard, name: name)
                guard state.subscribers[key] != nil else { return [] }
                state.confirmed.remove(key)
                return state.lostHandlers
            }
            for handler in lost { handler() }
        default:
            break  // other unsubscribe confirmations, pong
        }
    }

    private func deliver(_ key: Key, _ message: RedisPubSubMessage) {
        let sinks = state.withLock { $0.subscribers[key].map { Array($0.values) } ?? [] }
        for sink in sinks {
            switch sink {
            case .stream(let continuation): continuation.yield(message)
            case .handler(let handler): handler(message)
            }
        }
    }

    private func confirm(_ key: Key) {
        let waiters = state.withLock { state -> [ConfirmWaiter] in
            let remaining = max(0, (state.inFlight[key] ?? 0) - 1)
            state.inFlight[key] = remaining == 0 ? nil : remaining
            guard remaining == 0, state.subscribers[key] != nil else { return [] }
            state.confirmed.insert(key)
            return state.confirmWaiters.removeValue(forKey: key) ?? []
        }
        for waiter in waiters { waiter.continuation.resume() }
    }
}
