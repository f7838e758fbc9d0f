/// The deadlines of one HTTP/1 connection, as a state machine that returns what to do: a client gets
/// ``Limits/header`` from a request's first byte to the end of its headers, ``Limits/body`` from there to the end of
/// its body, and ``Limits/idle`` between requests on a keep-alive connection. While the server answers (a handler
/// runs, or a stream is open) no deadline runs at all, so an SSE stream lives as long as it has events to send.
///
/// Pure: the channel handler (``ConnectionGuard``) feeds it events and carries out the actions.
struct ConnectionTimeouts {
    /// How long each wait may last.
    struct Limits: Sendable, Equatable {
        /// From the first byte of a request to the end of its headers.
        var header: Duration
        /// From the end of the headers to the end of the body.
        var body: Duration
        /// Between the end of a response and the first byte of the next request.
        var idle: Duration
    }

    /// Which deadline an action starts.
    enum Deadline: Equatable {
        case header, body, idle
    }

    /// What the channel handler does next.
    enum Action: Equatable {
        /// Nothing changes.
        case none
        /// (Re)start the timer for this deadline, replacing any running one.
        case schedule(Deadline)
        /// Stop the running timer.
        case cancel
        /// Close the connection: a deadline passed.
        case close
    }

    /// How far the request after the one being answered has arrived (HTTP/1 pipelining reads ahead).
    enum Next: Equatable {
        case nothing, head, body, complete
    }

    enum State: Equatable {
        /// Between requests, nothing of the next received: the idle deadline runs.
        case idle
        /// The first bytes of a request arrived, its headers have not ended: the header deadline runs.
        case readingHead
        /// The headers arrived, the body has not ended: the body deadline runs. `answered`: the response to this
        /// request has already ended (a handler may answer without reading the body, 401 say).
        case readingBody(answered: Bool)
        /// The request is read and the server is answering it: no deadline.
        case answering(next: Next)
        /// The connection is closed.
        case closed
    }

    private(set) var state: State = .idle

    /// A new connection waits for its first request under the idle deadline.
    func start() -> Action { .schedule(.idle) }

    /// Bytes arrived from the client (seen before the HTTP decoder turns them into parts).
    mutating func bytesReceived() -> Action {
        switch state {
        case .idle:
            state = .readingHead
            return .schedule(.header)
        case .answering(.nothing):
            state = .answering(next: .head)
            return .none
        case .readingHead, .readingBody, .answering, .closed:
            return .none
        }
    }

    /// A request's headers arrived.
    mutating func headReceived() -> Action {
        switch state {
        case .idle, .readingHead:
            state = .readingBody(answered: false)
            return .schedule(.body)
        case .answering(.nothing), .answering(.head):
            state = .answering(next: .body)
            return .none
        case .readingBody, .answering, .closed:
            return .none
        }
    }

    /// A request's body ended.
    mutating func endReceived() -> Action {
        switch state {
        case .readingBody(answered: true):
            state = .idle
            return .schedule(.idle)
        case .readingBody(answered: false):
            state = .answering(next: .nothing)
            return .cancel
        case .answering(.body):
            state = .answering(next: .complete)
            return .none
        case .idle, .readingHead, .answering, .closed:
            return .none
        }
    }

    /// The server wrote the end of a response.
    mutating func responseEnded() -> Action {
        switch state {
        case .answering(.nothing):
            state = .idle
            return .schedule(.idle)
        case .answering(.head):
            state = .readingHead
            return .schedule(.header)
        case .answering(.body):
            state = .readingBody(answered: false)
            return .schedule(.body)
        case .answering(.complete):
            state = .answering(next: .nothing)
            return .none
        case .readingBody(answered: false):
            state = .readingBody(answered: true)
            return .none
        case .idle, .readingHead, .readingBody(answered: true), .closed:
            return .none
        }
    }

    /// The running timer fired.
    mutating func deadlinePassed() -> Action {
        switch state {
        case .idle, .readingHead, .readingBody:
            state = .closed
            return .close
        case .answering, .closed:
            return .none
        }
    }

    /// The connection closed.
    mutating func closed() -> Action {
        state = .closed
        return .cancel
    }
}
