import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The entry point of RedisKit: a bounded pool of connections for ordinary commands (single commands and batches
/// from many callers are pipelined on shared connections; ``withConnection(_:)`` leases one exclusively), dedicated
/// connections for blocking commands, one shared pub/sub connection, and scripts.
///
/// ```swift
/// let redis = try RedisClient(url: "redis://127.0.0.1:6379/0")
/// try await redis.send("SET", "greeting", "hello")
/// let value = try await redis.send("GET", "greeting").string
/// ```
public final class RedisClient: Sendable {
    /// The configuration the client was made with.
    public let configuration: RedisConfiguration
    let pool: RedisConnectionPool
    private let blockingIdle: Mutex<[RedisConnection]>
    private let subscriberBox: Mutex<RedisSubscriber?>
    let logger: Logger

    /// How many idle dedicated connections ``sendBlocking(_:)`` keeps for reuse.
    static let blockingIdleLimit = 4

    /// Makes a client. It connects lazily, on the first command.
    public init(configuration: RedisConfiguration, logger: Logger = Logger(label: "tether.redis")) {
        self.configuration = configuration
        self.pool = RedisConnectionPool(configuration: configuration)
        self.blockingIdle = Mutex([])
        self.subscriberBox = Mutex(nil)
        self.logger = logger
    }

    /// Makes a client from a URL (see ``RedisConfiguration/init(url:eventLoopGroup:)``).
    public convenience init(url: String, logger: Logger = Logger(label: "tether.redis")) throws(RedisError) {
        self.init(configuration: try RedisConfiguration(url: url), logger: logger)
    }

    /// Sends one command on a pooled connection and returns its reply.
    ///
    /// Throws ``RedisError``: `serverError` with Redis's message for an error reply, `unavailable` at once while
    /// Redis is unreachable, `timeout` after the command timeout. A command that provably never reached the server
    /// (its connection had just closed) is retried once on another connection.
    @discardableResult
    public func send(_ command: RedisCommand) async throws -> RESPValue {
        let start = ContinuousClock.now
        do {
            let reply = try await sendRetrying(command)
            RedisMetrics.record(command.name, since: start, error: nil)
            return reply
        } catch {
            RedisMetrics.record(command.name, since: start, error: error)
            throw error
        }
    }

    private func sendRetrying(_ command: RedisCommand) async throws -> RESPValue {
        do {
            return try await withSharedConnection { try await $0.send(command) }
        } catch let error as RedisError where error.code == .connectionClosed && !error.commandMayHaveRun {
            return try await withSharedConnection { try await $0.send(command) }
        }
    }

    /// Sends many commands back to back on one pooled connection and awaits all replies at once.
    /// Error replies stay in the array as ``RESPValue/error(_:)``.
    @discardableResult
    public func send(batch commands: [RedisCommand]) async throws -> [RESPValue] {
        let start = ContinuousClock.now
        do {
            let replies = try await sendRetrying(batch: commands)
            RedisMetrics.record("PIPELINE", since: start, error: nil)
            return replies
        } catch {
            RedisMetrics.record("PIPELINE", since: start, error: error)
            throw error
        }
    }

    private func sendRetrying(batch commands: [RedisCommand]) async throws -> [RESPValue] {
        do {
            return try await withSharedConnection { try await $0.send(batch: commands) }
        } catch let error as RedisError where error.code == .connectionClosed && !error.commandMayHaveRun {
            return try await withSharedConnection { try await $0.send(batch: commands) }
        }
    }

    /// Runs `body` on a pooled connection that other callers' commands may share (pipelined).
    private func withSharedConnection<T: Sendable>(_ body: (RedisConnection) async throws -> T) async throws -> T {
        let connection = try await pool.leaseShared()
        defer { pool.releaseShared(connection) }
        return try await body(connection)
    }

    /// Runs `body` with a pooled connection of its own (for `WATCH`/`MULTI`/`EXEC`, or a burst of commands),
    /// then gives it back, also when `body` throws or the task is cancelled.
    public func withConnection<T: Sendable>(_ body: (RedisConnection) async throws -> T) async throws -> T {
        let connection = try await pool.lease()
        defer { pool.release(connection) }
        return try await body(connection)
    }

    /// Runs a blocking command (`XREAD BLOCK`, `XREADGROUP BLOCK`, `BLPOP`...) on a dedicated connection.
    ///
    /// Cancelling the calling task closes that connection and returns promptly with `CancellationError`;
    /// otherwise the connection is kept for the next blocking command (a few are kept idle).
    @discardableResult
    public func sendBlocking(_ command: RedisCommand) async throws -> RESPValue {
        var connection = blockingIdle.withLock { idle -> RedisConnection? in
            while let c = idle.popLast() { if c.isActive { return c } }
            return nil
        }
        if connection == nil { connection = try await pool.connectDedicated() }
        guard let connection else { throw RedisError(.unavailable, "no connection") }
        do {
            let reply = try await connection.sendBlocking(command)
            let kept = blockingIdle.withLock { idle -> Bool in
                guard idle.count < Self.blockingIdleLimit else { return false }
                idle.append(connection)
                return true
            }
            if !kept { connection.close() }
            return reply
        } catch let error as RedisError where error.code == .serverError {
            blockingIdle.withLock { idle in
                if idle.count < Self.blockingIdleLimit { idle.append(connection) } else { connection.close() }
            }
            throw error
        } catch {
            connection.close()
            throw error
        }
    }

    /// Opens a connection outside the pool, owned by the caller (who closes it): for a loop of blocking reads.
    public func dedicatedConnection() async throws -> RedisConnection {
        try await pool.connectDedicated()
    }

    /// Runs a script with `EVALSHA`; when Redis does not know it (`NOSCRIPT`), loads it and runs it again.
    @discardableResult
    public func run(_ script: RedisScript, keys: [String], arguments: [any RedisArgument]) async throws -> RESPValue {
        try await run(script, command: Self.evalsha(script, keys: keys, arguments: arguments))
    }

    func run(_ script: RedisScript, command: RedisCommand) async throws -> RESPValue {
        do {
            return try await send(command)
        } catch let error as RedisError where error.serverErrorPrefix == "NOSCRIPT" {
            let sha = try await send("SCRIPT", "LOAD", script.source).requireString()
            if sha != script.sha1 { logger.warning("SCRIPT LOAD returned \(sha), expected \(script.sha1)") }
            return try await send(command)
        }
    }

    /// Sends one command without suspending the caller, for code driven by event-loop callbacks: the reply
    /// completes the returned future (on the connection's event loop, or on one of the configuration's loops).
    ///
    /// Same behaviour as ``send(_:)``: a shared pooled connection (pipelined) when one is open, the same errors,
    /// the same single retry of a command that never reached the server. When no connection is open yet it
    /// falls back to ``send(_:)`` in a task. With `script` (the command is its `EVALSHA`), an unknown script is
    /// loaded and run again.
    ///
    /// One future per command (the connection's), one callback: replies are checked, the connection given back, a
    /// command that never reached the server retried, without a chain of futures.
    public func submit(_ command: RedisCommand, script: RedisScript?) -> EventLoopFuture<RESPValue> {
        guard let connection = pool.tryLeaseShared() else { return sendInTask(command, script: script) }
        let start = ContinuousClock.now
        let reply = connection.submit(command)
        let promise = reply.eventLoop.makePromise(of: RESPValue.self)
        // Recorded here when answered here; a command sent again (sendInTask) is recorded by send or run.
        reply.whenComplete { result in
            self.pool.releaseShared(connection)
            switch result {
            case .success(.error(let message)):
                let error = RedisError(reply: message)
                if script != nil, error.serverErrorPrefix == "NOSCRIPT" {
                    promise.completeWith(self.sendInTask(command, script: script))
                } else {
                    RedisMetrics.record(command.name, since: start, error: error)
                    promise.fail(error)
                }
            case .success(let value):
                RedisMetrics.record(command.name, since: start, error: nil)
                promise.succeed(value)
            case .failure(let failure):
                let error = RedisConnection.redisError(failure)
                if error.code == .connectionClosed, !error.commandMayHaveRun {
                    promise.completeWith(self.sendInTask(command, script: script))
                } else {
                    RedisMetrics.record(command.name, since: start, error: error)
                    promise.fail(error)
                }
            }
        }
        return promise.futureResult
    }

    private func sendInTask(_ command: RedisCommand, script: RedisScript?) -> EventLoopFuture<RESPValue> {
        let loop = MultiThreadedEventLoopGroup.currentEventLoop ?? configuration.eventLoopGroup.any()
        if let script { return loop.makeFutureWithTask { try await self.run(script, command: command) } }
        return loop.makeFutureWithTask { try await self.send(command) }
    }

    static func evalsha(_ script: RedisScript, keys: [String], arguments: [any RedisArgument]) -> RedisCommand {
        var command = RedisCommand("EVALSHA", script.sha1, keys.count)
        for key in keys { command.append(key) }
        for argument in arguments { command.append(argument: argument) }
        return command
    }

    /// The client's one pub/sub connection, made on first use; every subscription shares it.
    public var subscriber: RedisSubscriber {
        subscriberBox.withLock { box in
            if let existing = box { return existing }
            let made = RedisSubscriber(pool: pool, configuration: configuration, logger: logger)
            box = made
            return made
        }
    }

    /// Connections of the ordinary pool, open or being opened (for metrics and tests).
    public var pooledConnectionCount: Int { pool.openCount }

    /// Callers waiting for a pooled connection (for metrics and tests).
    public var waitingForConnectionCount: Int { pool.waitingCount }

    /// Closes every connection: idle pooled ones now, leased ones when given back, blocking and pub/sub ones now.
    public func shutdown() {
        pool.shutdown()
        let idle = blockingIdle.withLock { idle in
            defer { idle = [] }
            return idle
        }
        for connection in idle { connection.close() }
        subscriberBox.withLock { $0 }?.shutdown()
    }
}
