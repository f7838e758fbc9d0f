import Logging
import Synchronization
import TetherCore

/// One execution as a runner drives it: its state, what of the log it has folded in, and its appends (fenced).
/// Confined to the task that runs the execution.
///
/// Others append too (the decide and cancel scripts), between this runner's own appends: ``readNew()`` reads on from
/// the last entry it read, not from the last it appended, and skips the entries it appended itself (already folded
/// in), so an entry appended in between is never missed.
///
/// Every append of a step (not a turn's streamed output) carries the state it leaves as a checkpoint, which the
/// append script stores only when the log's newest entry is still ``folded``, the newest entry through which this
/// run's state holds every entry of the log: a run resumed from the checkpoint and the entries after it never needs
/// the entries the stream's trimming dropped. When an append finds that someone else appended since (the script
/// returns the newest entry before it), the run reads the log on at once, so that the next checkpoint holds that
/// entry too; a checkpoint never skips an entry that sits before it.
final class ExecutionRun {
    let store: ExecutionStore
    let executionID: String
    let fence: Int
    private(set) var state = AgentState()
    /// The newest entry read from the log.
    private var lastRead: StreamID?
    /// The newest entry through which the state holds every entry of the log (nothing appended by others before it
    /// is unread).
    private var folded: StreamID?
    /// Entries this runner appended and folded in, not yet passed by a read.
    private var appended: Set<String> = []
    /// The newest entry this runner appended (or a recorder it drove did): each append checks that the log still
    /// holds it (``AppendError/diverged`` when a failover lost it).
    private(set) var ownLast: String?
    /// Turns whose streamed output (text deltas, tool-call starts and fragments) a recorder stored and this runner
    /// folded in: their entries are skipped by a read (only the runner holding the lease writes them).
    private var recordedTurns: Set<String> = []

    /// The entry types a ``TurnRecorder`` writes.
    private static let turnOutput: Set<String> = [
        EventType.text.rawValue, EventType.toolCallStart.rawValue, EventType.toolCallDelta.rawValue,
    ]

    /// The worker's logger with the execution's id, tenant and agent as metadata.
    let logger: Logger

    init(store: ExecutionStore, executionID: String, fence: Int, logger: Logger = Logger(label: "tether.worker")) {
        self.store = store
        self.executionID = executionID
        self.fence = fence
        var logger = logger
        logger[metadataKey: "executionId"] = .string(executionID)
        self.logger = logger
    }

    /// The headers the request forwarded for tools, read once per run.
    func forwardedHeaders() async throws -> [String: String] {
        if let headers { return headers }
        let read = try await store.forwardedHeaders(executionID)
        headers = read
        return read
    }

    private var headers: [String: String]?

    /// Reads the log into the state: from the checkpoint, if there is one, and every entry after it.
    func load() async throws {
        if let checkpoint = try await store.checkpoint(executionID),
            let json = try? JSON.parse(checkpoint.state), let restored = AgentState(checkpoint: json),
            let through = StreamID(checkpoint.through)
        {
            state = restored
            lastRead = through
            folded = through
        }
        try await readNew()
    }

    /// Reads and folds in the entries appended since the last one read (decisions come this way).
    func readNew() async throws {
        while true {
            let events = try await store.events(executionID, after: lastRead, count: 1000)
            for event in events { read(event) }
            if events.count < 1000 { break }
        }
        // Read through the tail: every entry up to it is in the state (this run's own ones were already).
        if let lastRead, folded.map({ lastRead > $0 }) ?? true { folded = lastRead }
    }

    private func read(_ event: StoredEvent) {
        if let position = event.position, let last = lastRead, position <= last { return }
        lastRead = event.position ?? lastRead
        if appended.remove(event.id) != nil { return }
        if Self.turnOutput.contains(event.type), let turn = JSON.rawMember("turnId", in: event.data),
            recordedTurns.contains(String(turn.dropFirst().dropLast()))
        {
            return
        }
        state.apply(event.type, event.json)
    }

    /// Appends events (fenced) and folds them in, with the state they leave as a checkpoint.
    func append(_ events: [NewEvent]) async throws {
        var next = state
        for event in events { next.apply(event.type.rawValue, event.data) }
        // An append that ends the execution needs none: nothing resumes a finished execution.
        let ends = events.contains { $0.status?.isTerminal == true }
        let checkpoint = ends ? nil : folded.map { Checkpoint(state: next.checkpoint.rendered, after: $0.description) }
        let written = try await store.append(
            executionID, fence: fence, events: events, checkpoint: checkpoint, after: ownLast)
        state = next
        appended.formUnion(written.ids)
        ownLast = written.ids.last ?? ownLast
        guard !ends else { return }
        if written.previous == folded?.description {
            folded = written.ids.last.flatMap { StreamID($0) } ?? folded
        } else {
            // Someone appended since the newest entry folded in: read it now, before the next checkpoint.
            try await readNew()
        }
    }

    /// Folds in the output a ``TurnRecorder`` already stored for `turnID`.
    func fold(_ outcome: TurnRecorder.Outcome, turnID: String) {
        state.recordOutput(
            turnID: turnID, text: outcome.text, calls: outcome.calls.map { ($0.id, $0.name, $0.arguments) })
        recordedTurns.insert(turnID)
        ownLast = outcome.lastID ?? ownLast
        // With nothing else among the turn's entries, the state now holds the log through its last one; otherwise
        // ``folded`` stays, the next append finds the log moved on, and the run reads on.
        if outcome.unbroken, outcome.precededBy == folded?.description, let last = outcome.lastID.flatMap(StreamID.init)
        {
            folded = last
        }
    }

    /// Ends the execution as failed: an `error` event with a stable code and a message for people, then `finish`.
    func fail(code: String, message: String) async throws {
        try await append(Self.failure(code: code, message: message))
    }

    static func failure(code: String, message: String) -> [NewEvent] {
        [
            NewEvent(.error, ["code": .string(code), "message": .string(message)]),
            NewEvent(.finish, ["status": "failed"], status: .failed),
        ]
    }

    /// The call with that id, in any turn.
    func call(_ id: String) -> AgentState.Call? {
        for turn in state.turns.reversed() {
            if let call = turn.calls.last(where: { $0.id == id }) { return call }
        }
        return nil
    }
}
