/// The life of one MCP server connection, as a state machine: each event returns what to do, and nothing here
/// touches a process or a socket (``MCPToolServer`` carries the actions out).
///
/// A connection is made when a tool list or a call needs it, not before. When it ends (the server process died, the
/// HTTP session expired) the next use makes a new one at once; a connection that cannot be made is tried again after
/// a backoff (0.5 s doubling, at most 30 s), so a server that is down costs one attempt per backoff, not one per
/// model turn. Each connection has a generation: news of an older one (it ended, it connected after it was given up)
/// is recognised as stale.
struct MCPSupervisor<Session: Sendable>: Sendable {
    enum State: Sendable {
        /// No connection. After `failures` failed attempts in a row the next is not made before `retryAt`.
        case idle(failures: Int, retryAt: ContinuousClock.Instant?)
        /// Connection `generation` is being made; `endedEarly` when its transport closed meanwhile.
        case connecting(generation: Int, failures: Int, endedEarly: Bool = false)
        /// Connection `generation` is up.
        case ready(generation: Int, session: Session)
    }

    /// What to do when a connection is wanted.
    enum Demand: Sendable {
        /// Make connection `generation`, and report with ``connected(_:session:)`` or ``failed(_:at:)``.
        case connect(generation: Int)
        /// A connection is being made: wait for it.
        case wait
        /// Use this one.
        case use(Session)
        /// The server is unavailable until `retryAt`: go on without it.
        case unavailable(retryAt: ContinuousClock.Instant)
    }

    private(set) var state = State.idle(failures: 0, retryAt: nil)
    private var generations = 0

    /// The backoff after `failures` failed attempts in a row.
    static func backoff(failures: Int) -> Duration {
        .milliseconds(min(30_000, 500 << min(max(failures - 1, 0), 10)))
    }

    /// A tool list or a call wants the connection at `now`.
    mutating func want(at now: ContinuousClock.Instant) -> Demand {
        switch state {
        case .ready(_, let session):
            return .use(session)
        case .connecting:
            return .wait
        case .idle(let failures, let retryAt):
            if let retryAt, now < retryAt { return .unavailable(retryAt: retryAt) }
            generations += 1
            state = .connecting(generation: generations, failures: failures, endedEarly: false)
            return .connect(generation: generations)
        }
    }

    /// Connection `generation` is up. Returns `false` when it is stale (close it).
    mutating func connected(_ generation: Int, session: Session) -> Bool {
        guard case .connecting(generation, let failures, let endedEarly) = state else { return false }
        if endedEarly {
            // It closed before it was handed out: dead on arrival, and counted as a failure.
            state = .idle(failures: failures + 1, retryAt: .now + Self.backoff(failures: failures + 1))
            return false
        }
        state = .ready(generation: generation, session: session)
        return true
    }

    /// Connection `generation`, still up, has new details (the tools it listed again).
    mutating func update(_ generation: Int, session: Session) {
        guard case .ready(generation, _) = state else { return }
        state = .ready(generation: generation, session: session)
    }

    /// Connection `generation` could not be made at `now`.
    mutating func failed(_ generation: Int, at now: ContinuousClock.Instant) {
        guard case .connecting(generation, let failures, _) = state else { return }
        state = .idle(failures: failures + 1, retryAt: now + Self.backoff(failures: failures + 1))
    }

    /// Connection `generation` ended (the process exited, the session expired, a call found it broken). Returns
    /// the session to close when it was the current one; the next use connects again at once.
    mutating func ended(_ generation: Int) -> Session? {
        if case .connecting(generation, let failures, _) = state {
            state = .connecting(generation: generation, failures: failures, endedEarly: true)
            return nil
        }
        guard case .ready(generation, let session) = state else { return nil }
        state = .idle(failures: 0, retryAt: nil)
        return session
    }

    /// The worker is stopping: returns the session to close, if any; nothing connects after.
    mutating func shutDown() -> Session? {
        defer { state = .idle(failures: 0, retryAt: .now + .seconds(365 * 86400)) }
        if case .ready(_, let session) = state { return session }
        return nil
    }
}
