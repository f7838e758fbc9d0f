import RedisKit

/// The Redis key schema (see docs/redis.md). Every key of one execution shares the hash tag `{<executionId>}`,
/// so a Redis Cluster keeps them in one slot.
public struct Keys: Sendable, Hashable {
    /// The prefix of every key (default `tether`).
    public let prefix: String

    /// Makes the schema for `prefix`.
    public init(prefix: String) { self.prefix = prefix }

    /// Hash: the execution's record (status, owner, fence...).
    public func meta(_ executionID: String) -> String { "\(prefix):{\(executionID)}:meta" }
    /// Stream: the execution's canonical event log; entry id = SSE id.
    public func events(_ executionID: String) -> String { "\(prefix):{\(executionID)}:events" }
    /// Hash: toolCallId → approval request; `toolCallId:decision` → the decision.
    public func approvals(_ executionID: String) -> String { "\(prefix):{\(executionID)}:approvals" }
    /// Channel: the id of the newest event, announced after every append, for the gateways' live tailing.
    public func tail(_ executionID: String) -> String { "\(prefix):{\(executionID)}:tail" }
    /// Channel: control messages (`cancel`) for the worker that runs the execution.
    public func control(_ executionID: String) -> String { "\(prefix):{\(executionID)}:control" }
    /// Hash: the agent state a worker checkpointed (`state`, JSON) and the id of the last entry it covers
    /// (`through`): a resumed run starts there, whatever the stream's trimming dropped before it.
    public func checkpoint(_ executionID: String) -> String { "\(prefix):{\(executionID)}:checkpoint" }
    /// Sorted set: parked executions (waiting for approval, held by no worker), scored by their earliest approval
    /// deadline in milliseconds (or by the end of a worker's claim on that deadline).
    public var deadlines: String { "\(prefix):deadlines" }
    /// Sorted set: the same parked executions, scored by when they parked (ms): how many wait, and for how long.
    public var waiting: String { "\(prefix):waiting" }
    /// Hash: each running worker process's status (``WorkerStatus`` JSON), by its consumer name, rewritten every
    /// 2 s; `tether top` reads it.
    public var workers: String { "\(prefix):workers" }
    /// Stream + consumer group: one entry per execution to run.
    public var jobs: String { "\(prefix):jobs" }
    /// The consumer group of the workers on ``jobs``.
    public var jobsGroup: String { "workers" }
    /// Hash: the execution created for an `Idempotency-Key` (`executionId tenant agent key requestDigest`),
    /// named by the SHA-256 of tenant, agent and key, each length-prefixed: no two (tenant, agent, key) triples
    /// share it, whatever characters they hold. Expires after a day.
    public func idempotency(tenant: String, agent: String, key: String) -> String {
        var bytes: [UInt8] = []
        for part in [tenant, agent, key] {
            bytes += Array(String(part.utf8.count).utf8) + [UInt8(ascii: ":")] + Array(part.utf8)
        }
        return "\(prefix):idem:" + Digest.hex(Digest.sha256(bytes))
    }
    /// Hash: one API key stored in Redis (tenant, agent, secret digest, created, revoked).
    public func apiKey(_ keyID: String) -> String { "\(prefix):apikey:\(keyID)" }
    /// String: the hex secret under which key ids are MACed (``APIKeys/isIssued(_:secret:)``); made with the first
    /// key. Losing it invalidates every key made with `tether keys create`.
    public var apiKeyIDSecret: String { "\(prefix):apikey-id-secret" }
    /// Set: the ids of the API keys stored in Redis.
    public var apiKeyIndex: String { "\(prefix):apikeys" }
    /// List: a conversation's history, scoped by tenant: one JSON item per entry (a user or system message, an
    /// assistant turn with its tool calls, a tool result), oldest first.
    public func conversation(tenant: String, conversationID: String) -> String {
        "\(prefix):{conv:\(tenant):\(conversationID)}:messages"
    }
    /// Hash: a conversation's state: `running` (the execution on it now, if any), `lastExecution` (the last whose
    /// turns were appended), `updatedAt`.
    public func conversationState(tenant: String, conversationID: String) -> String {
        "\(prefix):{conv:\(tenant):\(conversationID)}:state"
    }
}
