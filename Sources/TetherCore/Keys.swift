import RedisKit
import Synchronization

/// The Redis key schema (see docs/redis.md), in one of two layouts.
///
/// - **Single Redis** (the default): every key of one execution shares the hash tag `{<executionId>}`; the job
///   stream, the deadline set and the waiting set are one key each (`tether:jobs`...).
/// - **Sharded** (``shardCount`` > 1, always on a Redis Cluster): the deployment has N shards, each with a hash tag
///   of its own (``shardTag(_:)``) and its own job stream, deadline set and waiting set. An execution belongs to
///   the shard of its conversation (``shard(tenant:conversationID:)``), and its id is made so that the shard is a
///   function of the id too (``newExecutionID(tenant:conversationID:)``): its keys, its conversation's and its shard's
///   share one slot, so every script that changes an execution stays atomic on a cluster. Announcements are shard
///   channels (`SPUBLISH`).
public struct Keys: Sendable, Hashable {
    /// The prefix of every key (default `tether`).
    public let prefix: String
    /// The shards' hash tags; empty in the single-Redis layout.
    private let tags: [String]

    /// Makes the schema for `prefix`: the single-Redis layout for `shards` 0, else `shards` shards.
    public init(prefix: String, shards: Int = 0) {
        self.prefix = prefix
        self.tags = shards > 0 ? Self.tags(shards) : []
    }

    /// Whether this is the sharded layout.
    public var isSharded: Bool { !tags.isEmpty }

    /// How many job streams (deadline sets, waiting sets) there are: 1 in the single-Redis layout.
    public var shardCount: Int { max(1, tags.count) }

    /// Every shard's number.
    public var shards: Range<Int> { 0..<shardCount }

    /// The shard of an execution: a function of its id (0 in the single-Redis layout).
    public func shard(of executionID: String) -> Int { shard(hashing: executionID) }

    /// The shard of a conversation, which its executions share.
    public func shard(tenant: String, conversationID: String) -> Int {
        shard(hashing: "\(tenant.utf8.count):\(tenant):\(conversationID)")
    }

    private func shard(hashing text: String) -> Int {
        tags.isEmpty ? 0 : Int(ClusterSlot.crc16(text.utf8)) % tags.count
    }

    /// A new execution id (`exec_<ULID>`) in the shard of the conversation (any id in the single-Redis layout).
    public func newExecutionID(tenant: String, conversationID: String) -> String {
        let wanted = shard(tenant: tenant, conversationID: conversationID)
        while true {
            let id = Identifiers.executionID()
            if shard(of: id) == wanted { return id }
        }
    }

    /// The hash tag of shard `k` (sharded layout): `<k>.<n>`, with `n` the first that puts shard k's slot near the
    /// middle of the k-th of N equal slot ranges, so that shards spread evenly over masters that split the slots
    /// evenly (as `redis-cli --cluster create` does).
    public func shardTag(_ shard: Int) -> String { tags[shard] }

    private static let tagCache = Mutex<[Int: [String]]>([:])

    private static func tags(_ count: Int) -> [String] {
        if let known = tagCache.withLock({ $0[count] }) { return known }
        let width = Double(ClusterSlot.count) / Double(count)
        let made = (0..<count).map { shard -> String in
            let middle = Int(width * (Double(shard) + 0.5))
            let tolerance = max(0, Int(width / 8))
            var n = 0
            while true {
                let tag = "\(shard).\(n)"
                if abs(ClusterSlot.of(tag) - middle) <= tolerance { return tag }
                n += 1
            }
        }
        tagCache.withLock { $0[count] = made }
        return made
    }

    /// What every key of an execution starts with: `tether:{<id>}` or, sharded, `tether:{<shard tag>}:<id>`.
    private func base(_ executionID: String) -> String {
        tags.isEmpty
            ? "\(prefix):{\(executionID)}" : "\(prefix):{\(tags[shard(of: executionID)])}:\(executionID)"
    }

    /// What every key of a shard starts with: `tether` or, sharded, `tether:{<shard tag>}`.
    private func shardBase(_ shard: Int) -> String { tags.isEmpty ? prefix : "\(prefix):{\(tags[shard])}" }

    /// Hash: the execution's record (status, owner, fence...).
    public func meta(_ executionID: String) -> String { base(executionID) + ":meta" }
    /// Stream: the execution's canonical event log; entry id = SSE id.
    public func events(_ executionID: String) -> String { base(executionID) + ":events" }
    /// Hash: toolCallId → approval request; `toolCallId:decision` → the decision.
    public func approvals(_ executionID: String) -> String { base(executionID) + ":approvals" }
    /// Channel: the id of the newest event, announced after every append, for the gateways' live tailing (a shard
    /// channel in the sharded layout: see ``channelKind``).
    public func tail(_ executionID: String) -> String { base(executionID) + ":tail" }
    /// Channel: control messages (`cancel`) for the worker that runs the execution.
    public func control(_ executionID: String) -> String { base(executionID) + ":control" }
    /// Hash: the agent state a worker checkpointed (`state`, JSON) and the id of the last entry it covers
    /// (`through`): a resumed run starts there, whatever the stream's trimming dropped before it.
    public func checkpoint(_ executionID: String) -> String { base(executionID) + ":checkpoint" }
    /// How the ``tail(_:)`` and ``control(_:)`` channels are published: `PUBLISH` (single Redis) or `SPUBLISH`
    /// (sharded, where a cluster keeps a shard channel on its slot's master).
    public var channelKind: RedisSubscriptionKind { tags.isEmpty ? .channel : .shard }
    /// Sorted set: a shard's parked executions (waiting for approval, held by no worker), scored by their earliest
    /// approval deadline in milliseconds (or by the end of a worker's claim on that deadline).
    public func deadlines(shard: Int) -> String { shardBase(shard) + ":deadlines" }
    /// The deadline set of an execution's shard.
    public func deadlines(for executionID: String) -> String { deadlines(shard: shard(of: executionID)) }
    /// Sorted set: the same parked executions, scored by when they parked (ms): how many wait, and for how long.
    public func waiting(shard: Int) -> String { shardBase(shard) + ":waiting" }
    /// The waiting set of an execution's shard.
    public func waiting(for executionID: String) -> String { waiting(shard: shard(of: executionID)) }
    /// Hash: each running worker process's status (``WorkerStatus`` JSON), by its consumer name, rewritten every
    /// 2 s; `tether top` reads it. One key in either layout (its own slot on a cluster).
    public var workers: String { "\(prefix):workers" }
    /// Stream + consumer group: a shard's jobs, one entry per execution to run.
    public func jobs(shard: Int) -> String { shardBase(shard) + ":jobs" }
    /// The job stream of an execution's shard.
    public func jobs(for executionID: String) -> String { jobs(shard: shard(of: executionID)) }
    /// Shard channel (sharded layout only, else `""`): rung after a job is added to the shard's stream, so that
    /// workers, who cannot block on N streams of N slots at once, read it now.
    public func jobsBell(shard: Int) -> String { tags.isEmpty ? "" : shardBase(shard) + ":jobs-bell" }
    /// The consumer group of the workers on each job stream.
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
        conversationBase(tenant: tenant, conversationID: conversationID) + ":messages"
    }
    /// Hash: a conversation's state: `running` (the execution on it now, if any), `lastExecution` (the last whose
    /// turns were appended), `updatedAt`.
    public func conversationState(tenant: String, conversationID: String) -> String {
        conversationBase(tenant: tenant, conversationID: conversationID) + ":state"
    }
    /// `tether:{conv:<tenant>:<id>}` or, sharded, `tether:{<shard tag>}:conv:<tenant>:<id>`.
    private func conversationBase(tenant: String, conversationID: String) -> String {
        if tags.isEmpty { return "\(prefix):{conv:\(tenant):\(conversationID)}" }
        return shardBase(shard(tenant: tenant, conversationID: conversationID)) + ":conv:\(tenant):\(conversationID)"
    }
}
