import Logging
import NIOCore
import NIOPosix

/// One connection to Redis, with many commands in flight (pipelining): replies are matched to commands in order.
///
/// Most code uses ``RedisClient``, which pools connections. A connection of one's own is for blocking commands
/// (``sendBlocking(_:)``) and transactions. Thread-safe: any task may send at any time.
public final class RedisConnection: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<RedisChannelHandler>
    /// The configuration the connection was made with.
    public let configuration: RedisConfiguration

    private init(channel: any Channel, handler: NIOLoopBound<RedisChannelHandler>, configuration: RedisConfiguration) {
        self.channel = channel
        self.handler = handler
        self.configuration = configuration
    }

    /// Connects, authenticates (`AUTH`), selects the database and names the client, as the configuration says.
    ///
    /// Throws ``RedisError/Code/unavailable`` when the server cannot be reached, ``RedisError/Code/timeout`` when
    /// the connect takes longer than the connect timeout, and ``RedisError/Code/authenticationFailed`` when
    /// `AUTH` or `SELECT` is refused.
    public static func connect(
        _ configuration: RedisConfiguration,
        on eventLoop: (any EventLoop)? = nil
    ) async throws(RedisError) -> RedisConnection {
        let loop = eventLoop ?? configuration.eventLoopGroup.next()
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RedisChannelHandler())
                }
            }
        let channel: any Channel
        do {
            switch configuration.endpoint {
            case .tcp(let host, let port):
                channel = try await bootstrap.channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .connect(host: host, port: port).get()
            case .unix(let path):
                channel = try await bootstrap.connect(unixDomainSocketPath: path).get()
            }
        } catch let error as ChannelError {
            if case .connectTimeout = error {
                throw RedisError(.timeout, "connect to Redis at \(configuration.endpoint) timed out")
            }
            throw RedisError(.unavailable, "cannot connect to Redis at \(configuration.endpoint): \(error)")
        } catch {
            throw RedisError(.unavailable, "cannot connect to Redis at \(configuration.endpoint): \(error)")
        }
        let handler: NIOLoopBound<RedisChannelHandler>
        do {
            handler = try await channel.eventLoop.submit {
                NIOLoopBound(
                    try channel.pipeline.syncOperations.handler(type: RedisChannelHandler.self),
                    eventLoop: channel.eventLoop)
            }.get()
        } catch {
            channel.close(promise: nil)
            throw RedisError(.connectionClosed, "connection closed during set-up: \(error)")
        }
        let connection = RedisConnection(channel: channel, handler: handler, configuration: configuration)
        do {
            try await connection.handshake()
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    private func handshake() async throws(RedisError) {
        var commands: [RedisCommand] = []
        if let password = configuration.password {
            if let user = configuration.username {
                commands.append(RedisCommand("AUTH", user, password))
            } else {
                commands.append(RedisCommand("AUTH", password))
            }
        }
        if configuration.database != 0 { commands.append(RedisCommand("SELECT", configuration.database)) }
        if let name = configuration.clientName { commands.append(RedisCommand("CLIENT", "SETNAME", name)) }
        if configuration.readOnly { commands.append(RedisCommand("READONLY")) }
        commands.append(RedisCommand("PING"))
        let replies = try await send(batch: commands, timeout: configuration.connectTimeout)
        for (command, reply) in zip(commands, replies) {
            guard let message = reply.errorMessage else { continue }
            // A server still loading its data refuses even PING: that is an outage (retried after a backoff), not
            // refused credentials.
            let error = RedisError(reply: message)
            if error.code == .unavailable { throw error }
            throw RedisError(.authenticationFailed, "\(command.name) failed: \(message)")
        }
    }

    /// Whether the connection is open.
    public var isActive: Bool { channel.isActive }

    /// Completes when the connection has closed, for whatever reason.
    public var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    /// The event loop the connection runs on.
    public var eventLoop: any EventLoop { channel.eventLoop }

    /// Closes the connection; commands still waiting fail with ``RedisError/Code/connectionClosed``.
    public func close() {
        channel.close(promise: nil)
    }

    /// Sends one command and waits for its reply, at most the configured command timeout.
    ///
    /// An error reply is thrown as ``RedisError/Code/serverError`` with Redis's message; the connection stays
    /// usable. A timeout closes the connection (the order of later replies could no longer be trusted).
    /// Cancelling the calling task does not abandon the reply: it arrives within the timeout.
    @discardableResult
    public func send(_ command: RedisCommand) async throws(RedisError) -> RESPValue {
        try await send(command, deadline: .now() + configuration.commandTimeout)
    }

    /// Sends one command whose name and arguments are given inline.
    @discardableResult
    public func send(_ name: String, _ arguments: any RedisArgument...) async throws(RedisError) -> RESPValue {
        try await send(RedisCommand(name, arguments: arguments))
    }

    /// Sends a blocking command (`XREAD BLOCK`, `XREADGROUP BLOCK`, `BLPOP`...) and waits for its reply with no
    /// command timeout. Cancelling the calling task closes this connection at once (the only way to take back a
    /// command Redis is blocked on), so the task returns promptly with `CancellationError` and nothing stays
    /// blocked on the server.
    @discardableResult
    public func sendBlocking(_ command: RedisCommand) async throws -> RESPValue {
        try Task.checkCancellation()
        let channel = self.channel
        do {
            let reply = try await withTaskCancellationHandler {
                try await send(command, deadline: .distantFuture)
            } onCancel: {
                channel.close(promise: nil)
            }
            try Task.checkCancellation()
            return reply
        } catch let error as RedisError where error.code == .connectionClosed && Task.isCancelled {
            throw CancellationError()
        }
    }

    /// Sends commands back to back and waits for all their replies: one write, one wake-up for the batch.
    ///
    /// Error replies stay in the result as ``RESPValue/error(_:)`` values, one per failed command, so that the
    /// other replies are not lost; a connection failure or timeout throws.
    public func send(batch commands: [RedisCommand]) async throws(RedisError) -> [RESPValue] {
        try await send(batch: commands, timeout: configuration.commandTimeout)
    }

    func send(batch commands: [RedisCommand], timeout: TimeAmount) async throws(RedisError) -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        var buffer = channel.allocator.buffer(capacity: 64 * commands.count)
        for command in commands { command.encode(into: &buffer) }
        let promise = channel.eventLoop.makePromise(of: [RESPValue].self)
        submit(buffer, .batch(count: commands.count, promise), deadline: .now() + timeout)
        do {
            return try await promise.futureResult.get()
        } catch {
            throw Self.redisError(error)
        }
    }

    func send(_ command: RedisCommand, deadline: NIODeadline) async throws(RedisError) -> RESPValue {
        var buffer = channel.allocator.buffer(capacity: 64)
        command.encode(into: &buffer)
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        submit(buffer, .single(promise), deadline: deadline)
        let reply: RESPValue
        do {
            reply = try await promise.futureResult.get()
        } catch {
            throw Self.redisError(error)
        }
        if case .error(let message) = reply { throw RedisError(reply: message) }
        return reply
    }

    /// Sends one command without suspending: its reply completes the returned future, on this connection's event
    /// loop, within the command timeout. An error reply is a successful ``RESPValue/error(_:)``; the future fails
    /// only when the connection does (see ``RedisClient/submit(_:)`` for the checked form).
    func submit(_ command: RedisCommand) -> EventLoopFuture<RESPValue> {
        var buffer = channel.allocator.buffer(capacity: 64)
        command.encode(into: &buffer)
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        submit(buffer, .single(promise), deadline: .now() + configuration.commandTimeout)
        return promise.futureResult
    }

    private func submit(_ buffer: ByteBuffer, _ target: RedisReplyTarget, deadline: NIODeadline) {
        let handler = self.handler
        if channel.eventLoop.inEventLoop {
            handler.value.enqueue(buffer, target: target, deadline: deadline)
        } else {
            channel.eventLoop.execute { handler.value.enqueue(buffer, target: target, deadline: deadline) }
        }
    }

    /// Writes bytes no command waits on (pub/sub), on the event loop.
    func writeUnanswered(_ command: RedisCommand) {
        var encoded = channel.allocator.buffer(capacity: 64)
        command.encode(into: &encoded)
        let buffer = encoded
        let handler = self.handler
        channel.eventLoop.execute { handler.value.writeUnanswered(buffer) }
    }

    static func redisError(_ error: any Error) -> RedisError {
        if let error = error as? RedisError { return error }
        return RedisError(.connectionClosed, "connection failed: \(error)")
    }
}
