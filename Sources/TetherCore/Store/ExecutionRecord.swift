import RedisKit

/// An execution's record (the `meta` hash).
public struct ExecutionRecord: Sendable, Hashable {
    /// `exec_…`.
    public var id: String
    /// The tenant of the key that created it.
    public var tenant: String
    /// The agent it runs.
    public var agentId: String
    /// The id of the API key that created it.
    public var keyId: String
    /// The conversation it belongs to.
    public var conversationId: String
    /// Where it stands.
    public var status: ExecutionStatus
    /// ISO-8601 creation time.
    public var createdAt: String
    /// ISO-8601 time of the last change.
    public var updatedAt: String
    /// The id of the newest event.
    public var lastEventId: String?
    /// The error event's payload (JSON) when it failed.
    public var error: String?
    /// The worker holding the lease.
    public var owner: String?
    /// The lease's fence (raised on every takeover).
    public var fence: Int
    /// Items of the conversation's history when the execution was created (what its model sees before it).
    public var historyLength: Int
    /// Whether the execution started its conversation (then its model sees all of the request's messages; else the
    /// history and the request's last user message).
    public var conversationNew: Bool

    init?(_ fields: [String: String]) {
        guard let id = fields["id"], let tenant = fields["tenant"], let agentId = fields["agentId"],
            let status = fields["status"].flatMap(ExecutionStatus.init(rawValue:))
        else { return nil }
        self.id = id
        self.tenant = tenant
        self.agentId = agentId
        self.keyId = fields["keyId"] ?? ""
        self.conversationId = fields["conversationId"] ?? ""
        self.status = status
        self.createdAt = fields["createdAt"] ?? ""
        self.updatedAt = fields["updatedAt"] ?? ""
        self.lastEventId = fields["lastEventId"]
        self.error = fields["error"]
        self.owner = fields["owner"]
        self.fence = Int(fields["fence"] ?? "0") ?? 0
        self.historyLength = Int(fields["historyLength"] ?? "0") ?? 0
        self.conversationNew = fields["conversationNew"] != "0"
    }

    /// The meta fields a record is made of: all but `input`, which may be as large as a request body and is read
    /// only by the worker (``ExecutionStore/input(_:)``).
    static let fields = [
        "id", "tenant", "agentId", "keyId", "conversationId", "status", "createdAt", "updatedAt", "lastEventId",
        "error", "owner", "fence", "historyLength", "conversationNew",
    ]
}

/// One approval request and, once made, its decision.
public struct ApprovalEntry: Sendable, Hashable {
    /// The tool call awaiting approval.
    public var toolCallId: String
    /// The request: `{approvalId, toolCallId, toolName, input, requestedAt}`.
    public var request: JSON
    /// The decision: `{approved, reason, decidedAt}`, or `nil` while pending.
    public var decision: JSON?
}

/// What became of a decision sent to ``ExecutionStore/decide(_:toolCallID:approved:reason:)``.
public enum DecisionOutcome: Sendable, Hashable {
    /// Stored and announced.
    case recorded
    /// The same decision had been recorded before: nothing changed.
    case repeated
    /// No such execution.
    case executionNotFound
    /// No approval was requested for that tool call.
    case toolCallNotFound
    /// The opposite decision had been recorded before.
    case conflict
    /// The execution has finished.
    case finished
}

/// What became of ``ExecutionStore/cancel(_:)``.
public enum CancelOutcome: Sendable, Hashable {
    /// Cancelled now.
    case cancelled
    /// It had been cancelled before: nothing changed.
    case alreadyCancelled
    /// It completed or failed before.
    case finished
    /// No such execution.
    case executionNotFound
}

/// Errors of ``ExecutionStore/append(_:fence:events:checkpoint:after:)``.
public enum AppendError: Error, Sendable, Hashable {
    /// Another worker took the execution over (its fence is higher).
    case fenced
    /// The execution has already finished.
    case finished
    /// The execution does not exist (expired).
    case notFound
    /// The log no longer holds an entry this worker appended (a Redis failover lost what the master had not yet
    /// replicated): the run's state is ahead of the log, so it is run again from the log.
    case diverged
}

/// What is known of an execution's stream history, for reconnects.
public struct StreamHistory: Sendable, Hashable {
    /// The oldest entry still stored.
    public var firstID: StreamID?
    /// The newest entry.
    public var lastID: StreamID?
    /// Entries ever added (Redis 7's `entries-added`).
    public var entriesAdded: Int
    /// Entries stored now.
    public var length: Int

    /// Whether some of the oldest entries were trimmed away.
    public var isTrimmed: Bool { entriesAdded > length }

    /// Whether a client whose last id is `cursor` may have missed trimmed entries: the cursor is older than the
    /// oldest entry kept, and entries were trimmed. (When the cursor was itself the last trimmed entry, nothing
    /// was missed, but the stream cannot tell: the gap is reported, empty, rather than hidden.)
    public func hasGap(after cursor: StreamID) -> Bool {
        guard isTrimmed, let firstID else { return false }
        return cursor < firstID
    }
}
