import NIOCore
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
    }

    /// The meta fields a record is made of: all but `input`, which may be as large as a request body and is read
    /// only by the worker (``ExecutionStore/input(_:)``).
    static let fields = [
        "id", "tenant", "agentId", "keyId", "conversationId", "status", "createdAt", "updatedAt", "lastEventId",
        "error", "owner", "fence",
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

/// Errors of ``ExecutionStore/append(_:fence:events:)``.
public enum AppendError: Error, Sendable, Hashable {
    /// Another worker took the execution over (its fence is higher).
    case fenced
    /// The execution has already finished.
    case finished
    /// The execution does not exist (expired).
    case notFound
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

/// Reads and changes executions in Redis; every change is one Lua script (atomic).
public struct ExecutionStore: Sendable {
    /// The Redis client.
    public let redis: RedisClient
    /// The key schema.
    public let keys: Keys
    /// Approximate most entries per event stream.
    public let maxLength: Int
    /// Seconds keys live after the execution finished.
    public let retentionSeconds: Int

    /// Makes a store.
    public init(redis: RedisClient, keys: Keys, maxLength: Int = 100_000, retentionSeconds: Int = 604_800) {
        self.redis = redis
        self.keys = keys
        self.maxLength = maxLength
        self.retentionSeconds = retentionSeconds
    }

    /// Makes a store with the configuration's key prefix and stream limits (what gateways and workers use).
    public init(redis: RedisClient, config: TetherConfig) {
        self.init(
            redis: redis, keys: Keys(prefix: config.redis.prefix), maxLength: config.streams.maxLength,
            retentionSeconds: config.streams.retentionSeconds)
    }

    /// What ``create(id:tenant:agentId:keyId:conversationId:input:idempotencyKey:)`` did.
    public enum Creation: Sendable, Hashable {
        /// Created; the first event's id.
        case created(firstEventID: String)
        /// The idempotency key already named this execution: nothing was created.
        case existing(executionID: String)
    }

    /// How long an `Idempotency-Key` keeps naming its execution.
    public static let idempotencySeconds = 24 * 3600

    /// Creates the record, the first event and the job in one script, unless `idempotencyKey` already names an
    /// execution of the same tenant and agent.
    public func create(
        id: String, tenant: String, agentId: String, keyId: String, conversationId: String, input: JSON,
        idempotencyKey: String? = nil
    ) async throws -> Creation {
        let now = Identifiers.nowMilliseconds()
        let started: JSON = [
            "type": .string(EventType.started.rawValue), "executionId": .string(id), "agentId": .string(agentId),
            "conversationId": .string(conversationId),
        ]
        let idempotency = keys.idempotency(tenant: tenant, agent: agentId, key: idempotencyKey ?? "")
        let reply = try await redis.run(
            Scripts.create, keys: [keys.meta(id), keys.events(id), keys.jobs, idempotency],
            arguments: [
                id, tenant, agentId, keyId, conversationId, Identifiers.isoTimestamp(milliseconds: now), Int64(now),
                started.rendered, input.rendered, keys.tail(id), maxLength,
                idempotencyKey == nil ? "" : String(Self.idempotencySeconds),
            ])
        if let pair = reply.array, pair.count == 2, pair[0].string == "EXISTING", let existing = pair[1].string {
            return .existing(executionID: existing)
        }
        return .created(firstEventID: try reply.requireString())
    }

    /// The record, or `nil` when there is no such execution. Reads every meta field but the input.
    public func record(_ id: String) async throws -> ExecutionRecord? {
        let values = try await redis.send(
            RedisCommand("HMGET", arguments: [keys.meta(id)] + ExecutionRecord.fields)
        ).requireArray()
        var fields: [String: String] = [:]
        for (name, value) in zip(ExecutionRecord.fields, values) {
            if let text = value.string { fields[name] = text }
        }
        return ExecutionRecord(fields)
    }

    /// The input the execution was created with (`{"messages":[…],"forwardedHeaders":{…}}`), or `nil`.
    public func input(_ id: String) async throws -> JSON? {
        try await redis.send("HGET", keys.meta(id), "input").string.flatMap { try? JSON.parse($0) }
    }

    /// Every approval request of the execution, with its decision when made.
    public func approvals(_ id: String) async throws -> [ApprovalEntry] {
        let fields = try await redis.send("HGETALL", keys.approvals(id)).stringDictionary ?? [:]
        return fields.keys.filter { !$0.hasSuffix(":decision") }.sorted().map { toolCallId in
            ApprovalEntry(
                toolCallId: toolCallId, request: (try? JSON.parse(fields[toolCallId]!)) ?? .null,
                decision: fields[toolCallId + ":decision"].flatMap { try? JSON.parse($0) })
        }
    }

    /// The stored decision on one tool call, or `nil` while there is none.
    public func decision(_ id: String, toolCallID: String) async throws -> JSON? {
        let reply = try await redis.send("HGET", keys.approvals(id), toolCallID + ":decision")
        return reply.string.flatMap { try? JSON.parse($0) }
    }

    /// Records a decision once (see ``Scripts/decide``), appends `tool-approval-response`, then announces it.
    public func decide(_ id: String, toolCallID: String, approved: Bool, reason: String?) async throws
        -> DecisionOutcome
    {
        let now = Identifiers.nowMilliseconds()
        let iso = Identifiers.isoTimestamp(milliseconds: now)
        let reasonJSON: JSON = reason.map { .string($0) } ?? .null
        let decision: JSON = ["approved": .bool(approved), "reason": reasonJSON, "decidedAt": .string(iso)]
        let event: JSON = [
            "type": .string(EventType.approvalResponse.rawValue), "toolCallId": .string(toolCallID),
            "approved": .bool(approved), "reason": reasonJSON,
        ]
        do {
            let reply = try await redis.run(
                Scripts.decide, keys: [keys.meta(id), keys.events(id), keys.approvals(id)],
                arguments: [
                    toolCallID, approved ? "true" : "false", decision.rendered, event.rendered, iso, Int64(now),
                    keys.tail(id), keys.approvalsChannel(id), maxLength,
                ])
            return reply.string == "REPEATED" ? .repeated : .recorded
        } catch let error as RedisError where error.code == .serverError {
            switch error.serverErrorPrefix {
            case "NOTFOUND": return .executionNotFound
            case "NOTOOLCALL": return .toolCallNotFound
            case "CONFLICT": return .conflict
            case "FINISHED": return .finished
            default: throw error
            }
        }
    }

    /// Appends events for the lease holder `fence` (see ``Scripts/append``). Returns their ids.
    @discardableResult
    public func append(_ id: String, fence: Int, events: [NewEvent]) async throws -> [String] {
        guard !events.isEmpty else { return [] }
        do {
            return try Self.appendedIDs(
                try await redis.run(Scripts.append, keys: appendKeys(id), arguments: appendArguments(id, fence, events))
            )
        } catch {
            throw Self.appendError(error)
        }
    }

    /// ``append(_:fence:events:)`` without suspending the caller, for code driven by event-loop callbacks (see
    /// ``RedisClient/submit(_:)``): the future completes with the new ids or the same errors.
    public func submitAppend(_ id: String, fence: Int, events: [NewEvent]) -> EventLoopFuture<[String]> {
        guard !events.isEmpty else { return redis.configuration.eventLoopGroup.any().makeSucceededFuture([]) }
        let reply = redis.submit(Scripts.append, keys: appendKeys(id), arguments: appendArguments(id, fence, events))
        let promise = reply.eventLoop.makePromise(of: [String].self)
        reply.whenComplete { result in
            do {
                promise.succeed(try Self.appendedIDs(result.get()))
            } catch {
                promise.fail(Self.appendError(error))
            }
        }
        return promise.futureResult
    }

    private func appendKeys(_ id: String) -> [String] {
        [keys.meta(id), keys.events(id), keys.approvals(id)]
    }

    private func appendArguments(_ id: String, _ fence: Int, _ events: [NewEvent]) -> [any RedisArgument] {
        let now = Identifiers.nowMilliseconds()
        var arguments: [any RedisArgument] = [
            fence, keys.tail(id), Identifiers.isoTimestamp(milliseconds: now), Int64(now), maxLength, retentionSeconds,
        ]
        arguments.reserveCapacity(arguments.count + 5 * events.count)
        for event in events {
            arguments.append(event.type.rawValue)
            arguments.append(event.data.rendered)
            arguments.append(event.status?.rawValue ?? "")
            arguments.append(event.approvalField?.field ?? "")
            arguments.append(event.approvalField?.value ?? "")
        }
        return arguments
    }

    private static func appendedIDs(_ reply: RESPValue) throws -> [String] {
        try reply.requireArray().map { try $0.requireString() }
    }

    /// The script's error replies as ``AppendError``s; other errors unchanged.
    private static func appendError(_ error: any Error) -> any Error {
        guard let error = error as? RedisError, error.code == .serverError else { return error }
        switch error.serverErrorPrefix {
        case "FENCED": return AppendError.fenced
        case "FINISHED": return AppendError.finished
        case "NOTFOUND": return AppendError.notFound
        default: return error
        }
    }

    /// Takes the execution's lease for `owner`; returns the new fence and the current status.
    public func claim(_ id: String, owner: String) async throws -> (fence: Int, status: ExecutionStatus)? {
        do {
            let reply = try await redis.run(
                Scripts.claim, keys: [keys.meta(id)],
                arguments: [owner, Identifiers.isoTimestamp(milliseconds: Identifiers.nowMilliseconds())]
            ).requireArray()
            guard reply.count == 2, let fence = reply[0].int,
                let status = reply[1].string.flatMap(ExecutionStatus.init(rawValue:))
            else { return nil }
            return (fence, status)
        } catch let error as RedisError where error.serverErrorPrefix == "NOTFOUND" {
            return nil
        }
    }

    /// Events after `cursor` (exclusive; from the start when `nil`), at most `count`.
    public func events(_ id: String, after cursor: StreamID?, count: Int = 1000) async throws -> [StoredEvent] {
        let start = cursor.map { "(\($0)" } ?? "-"
        let reply = try await redis.send("XRANGE", keys.events(id), start, "+", "COUNT", count)
        return Self.parseEntries(reply)
    }

    /// Every event of the execution, in order.
    public func allEvents(_ id: String) async throws -> [StoredEvent] {
        var all: [StoredEvent] = []
        var cursor: StreamID?
        while true {
            let page = try await events(id, after: cursor, count: 1000)
            all += page
            guard page.count == 1000, let last = page.last?.position else { return all }
            cursor = last
        }
    }

    /// The oldest and newest ids of the execution's stream and whether it was trimmed, or `nil` when it does not
    /// exist.
    public func history(_ id: String) async throws -> StreamHistory? {
        let reply: RESPValue
        do {
            reply = try await redis.send("XINFO", "STREAM", keys.events(id))
        } catch let error as RedisError where error.code == .serverError {
            return nil
        }
        guard let fields = reply.array else { return nil }
        var history = StreamHistory(firstID: nil, lastID: nil, entriesAdded: 0, length: 0)
        var index = 0
        while index + 1 < fields.count {
            let name = fields[index].string
            let value = fields[index + 1]
            switch name {
            case "first-entry": history.firstID = value.array?.first?.string.flatMap { StreamID($0) }
            case "last-generated-id": history.lastID = value.string.flatMap { StreamID($0) }
            case "entries-added": history.entriesAdded = value.int ?? 0
            case "length": history.length = value.int ?? 0
            default: break
            }
            index += 2
        }
        return history
    }

    /// Parses `[[id, [field, value, ...]], ...]` into ids and field dictionaries (for streams other than events).
    public static func parseEntriesRaw(_ reply: RESPValue) -> [(id: String, fields: [String: String])] {
        (reply.array ?? []).compactMap { entry in
            guard let parts = entry.array, parts.count == 2, let id = parts[0].string else { return nil }
            return (id, parts[1].stringDictionary ?? [:])
        }
    }

    /// Parses `[[id, [field, value, ...]], ...]` (XRANGE, and each stream of XREAD).
    public static func parseEntries(_ reply: RESPValue) -> [StoredEvent] {
        guard let entries = reply.array else { return [] }
        var events: [StoredEvent] = []
        events.reserveCapacity(entries.count)
        for entry in entries {
            guard let parts = entry.array, parts.count == 2, let id = parts[0].string, let fields = parts[1].array
            else { continue }
            var event = StoredEvent(id: id, type: "", data: "{}", timestamp: 0)
            var index = 0
            while index + 1 < fields.count {
                switch fields[index].string {
                case "type": event.type = fields[index + 1].string ?? ""
                case "data": event.data = fields[index + 1].string ?? "{}"
                case "ts": event.timestamp = Int64(fields[index + 1].string ?? "") ?? 0
                case "status": event.status = fields[index + 1].string
                default: break
                }
                index += 2
            }
            events.append(event)
        }
        return events
    }
}
