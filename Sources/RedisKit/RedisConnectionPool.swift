import NIOCore
import Synchronization

/// A bounded pool of connections for ordinary commands.
///
/// - At most `poolSize` connections exist (open or being opened). A caller that finds none idle and the pool full
///   waits in line; a returned connection goes to the first in line.
/// - A broken connection is dropped when it is returned or found idle, and its slot reopens for the next caller.
/// - A caller cancelled while waiting leaves the line and gets `CancellationError`; a connection handed to it in
///   the same instant is still returned to the pool by the lease's owner, so nothing leaks.
/// - Single commands and batches (``leaseShared()``) share connections: many callers' commands are pipelined on
///   one connection, up to `sharedUsersTarget` callers per connection before another connection is used; when every
///   connection is open and busy they pile onto the least busy one. Exclusive leases (``lease()``) only take a
///   connection nobody uses.
/// - After a failed connect the pool backs off (doubling from the initial to the maximum backoff): meanwhile
///   callers that would need a new connection fail at once with ``RedisError/Code/unavailable``, and so does
///   everyone in line when no connection is left.
final class RedisConnectionPool: Sendable {
    private enum Grant {
        case connection(RedisConnection)
        case connect
    }

    /// What a caller asking for a connection does next, decided under the lock.
    private enum Step {
        case use(RedisConnection)
        case connect
        case wait
        case fail(RedisError)
    }

    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Grant, any Error>
    }

    private struct SharedEntry {
        var connection: RedisConnection
        var users: Int
    }

    private struct State {
        var idle: [RedisConnection] = []
        /// Connections carrying pipelined commands of several callers, with how many callers use each.
        var shared: [ObjectIdentifier: SharedEntry] = [:]
        /// Connections that exist or are being opened: idle, leased, or connecting.
        var open = 0
        var waiters = CircularBuffer<Waiter>()
        var nextWaiterID: UInt64 = 0
        var closed = false
        var backoff: TimeAmount
        var retryAt: NIODeadline?
        var lastError: RedisError?
    }

    private let configuration: RedisConfiguration
    private let state: Mutex<State>

    init(configuration: RedisConfiguration) {
        self.configuration = configuration
        self.state = Mutex(State(backoff: configuration.reconnectBackoffInitial))
    }

    /// Connections open or being opened, for tests and metrics.
    var openCount: Int { state.withLock { $0.open } }
    /// Callers waiting for a connection, for tests and metrics.
    var waitingCount: Int { state.withLock { $0.waiters.count } }

    /// Takes a connection for exclusive use; give it back with ``release(_:)``.
    func lease() async throws -> RedisConnection {
        let step: Step = state.withLock { state in
            if state.closed { return .fail(RedisError(.poolClosed, "the Redis client was shut down")) }
            if let connection = Self.popIdle(&state) { return .use(connection) }
            guard state.open < configuration.poolSize else { return .wait }
            if let error = Self.backingOff(&state) { return .fail(error) }
            state.open += 1
            return .connect
        }
        switch step {
        case .use(let connection): return connection
        case .fail(let error): throw error
        case .connect: return try await connect()
        case .wait:
            switch try await waitInLine() {
            case .connection(let connection): return connection
            case .connect: return try await connect()
            }
        }
    }

    /// Callers per shared connection before the pool spreads them over another connection.
    static let sharedUsersTarget = 32

    /// Takes a connection for one command or batch, possibly shared with other callers (pipelined); give it back
    /// with ``releaseShared(_:)``.
    func leaseShared() async throws -> RedisConnection {
        let step: Step = state.withLock { state in
            if state.closed { return .fail(RedisError(.poolClosed, "the Redis client was shut down")) }
            var best: ObjectIdentifier?
            var bestUsers = Int.max
            for (key, entry) in state.shared where entry.connection.isActive && entry.users < bestUsers {
                best = key
                bestUsers = entry.users
            }
            if let best, bestUsers < Self.sharedUsersTarget {
                state.shared[best]!.users += 1
                return .use(state.shared[best]!.connection)
            }
            if let connection = Self.popIdle(&state) {
                state.shared[ObjectIdentifier(connection)] = SharedEntry(connection: connection, users: 1)
                return .use(connection)
            }
            if state.open < configuration.poolSize {
                if let error = Self.backingOff(&state) {
                    guard let best else { return .fail(error) }
                    state.shared[best]!.users += 1
                    return .use(state.shared[best]!.connection)
                }
                state.open += 1
                return .connect
            }
            if let best {
                state.shared[best]!.users += 1
                return .use(state.shared[best]!.connection)
            }
            return .wait
        }
        let connection: RedisConnection
        switch step {
        case .use(let shared): return shared
        case .fail(let error): throw error
        case .connect: connection = try await connect()
        case .wait:
            switch try await waitInLine() {
            case .connection(let handed): connection = handed
            case .connect: connection = try await connect()
            }
        }
        state.withLock { $0.shared[ObjectIdentifier(connection)] = SharedEntry(connection: connection, users: 1) }
        return connection
    }

    /// A shared connection if one can be had without waiting or connecting (same choice as ``leaseShared()``),
    /// else `nil`; give it back with ``releaseShared(_:)``.
    func tryLeaseShared() -> RedisConnection? {
        state.withLock { state in
            if state.closed { return nil }
            var best: ObjectIdentifier?
            var bestUsers = Int.max
            for (key, entry) in state.shared where entry.connection.isActive && entry.users < bestUsers {
                best = key
                bestUsers = entry.users
            }
            if let best, bestUsers < Self.sharedUsersTarget || state.open >= configuration.poolSize {
                state.shared[best]!.users += 1
                return state.shared[best]!.connection
            }
            if let connection = Self.popIdle(&state) {
                state.shared[ObjectIdentifier(connection)] = SharedEntry(connection: connection, users: 1)
                return connection
            }
            return nil
        }
    }

    /// Gives back a connection from ``leaseShared()``; the last of its users returns it to the pool.
    func releaseShared(_ connection: RedisConnection) {
        let last = state.withLock { state -> Bool in
            let key = ObjectIdentifier(connection)
            guard var entry = state.shared[key] else { return true }
            entry.users -= 1
            if entry.users > 0 {
                state.shared[key] = entry
                return false
            }
            state.shared[key] = nil
            return true
        }
        if last { release(connection) }
    }

    /// Gives a leased connection back. A closed connection is dropped and its slot goes to the next in line.
    func release(_ connection: RedisConnection) {
        enum Step {
            case none
            case hand(CheckedContinuation<Grant, any Error>, Grant)
            case closeIt
        }
        let step: Step = state.withLock { state in
            if state.closed {
                state.open -= 1
                return .closeIt
            }
            if connection.isActive {
                if let waiter = state.waiters.popFirst() { return .hand(waiter.continuation, .connection(connection)) }
                state.idle.append(connection)
                return .none
            }
            // Broken: its slot passes to the first in line, who opens a new connection.
            if let waiter = state.waiters.popFirst() { return .hand(waiter.continuation, .connect) }
            state.open -= 1
            return .none
        }
        switch step {
        case .none: break
        case .hand(let continuation, let grant): continuation.resume(returning: grant)
        case .closeIt: connection.close()
        }
    }

    /// Closes idle connections and refuses new leases; leased connections close when returned.
    func shutdown() {
        let (idle, waiters) = state.withLock { state in
            state.closed = true
            let idle = state.idle
            state.open -= idle.count
            state.idle = []
            let waiters = Array(state.waiters)
            state.waiters.removeAll()
            return (idle, waiters)
        }
        for connection in idle { connection.close() }
        for waiter in waiters {
            waiter.continuation.resume(throwing: RedisError(.poolClosed, "the Redis client was shut down"))
        }
    }

    /// Opens a connection outside the pool's count (for blocking commands and pub/sub), honouring the backoff.
    func connectDedicated() async throws(RedisError) -> RedisConnection {
        if let error = state.withLock({ Self.backingOff(&$0) }) { throw error }
        do {
            let connection = try await RedisConnection.connect(configuration)
            state.withLock { Self.connected(&$0, configuration) }
            return connection
        } catch {
            state.withLock { Self.failedToConnect(&$0, error, configuration) }
            throw error
        }
    }

    private func connect() async throws(RedisError) -> RedisConnection {
        do {
            let connection = try await RedisConnection.connect(configuration)
            state.withLock { Self.connected(&$0, configuration) }
            return connection
        } catch {
            let waiters: [Waiter] = state.withLock { state in
                state.open -= 1
                Self.failedToConnect(&state, error, configuration)
                // Nobody will return a connection to those in line: tell them now rather than let them hang.
                guard state.open == 0 else { return [] }
                let waiters = Array(state.waiters)
                state.waiters.removeAll()
                return waiters
            }
            for waiter in waiters { waiter.continuation.resume(throwing: error) }
            throw error
        }
    }

    private func waitInLine() async throws -> Grant {
        let id = state.withLock { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Grant, any Error>) in
                let enqueued = state.withLock { state -> Bool in
                    if Task.isCancelled { return false }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return true
                }
                if !enqueued { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            let waiter: Waiter? = state.withLock { state in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index)
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    /// The most recently used idle connection that is still open; closed ones found on the way give up their slot.
    private static func popIdle(_ state: inout State) -> RedisConnection? {
        while let connection = state.idle.popLast() {
            if connection.isActive { return connection }
            state.open -= 1
        }
        return nil
    }

    private static func backingOff(_ state: inout State) -> RedisError? {
        guard let retryAt = state.retryAt, NIODeadline.now() < retryAt else { return nil }
        let wait = (retryAt - .now()).nanoseconds / 1_000_000
        return RedisError(
            .unavailable,
            "Redis is unavailable (\(state.lastError?.message ?? "connect failed")); next attempt in \(wait) ms")
    }

    private static func connected(_ state: inout State, _ configuration: RedisConfiguration) {
        state.retryAt = nil
        state.lastError = nil
        state.backoff = configuration.reconnectBackoffInitial
    }

    private static func failedToConnect(_ state: inout State, _ error: RedisError, _ configuration: RedisConfiguration)
    {
        // Refused credentials are not an outage: do not hold other callers back for them.
        guard error.code != .authenticationFailed else { return }
        state.lastError = error
        state.retryAt = .now() + state.backoff
        state.backoff = min(state.backoff * 2, configuration.reconnectBackoffMax)
    }
}
