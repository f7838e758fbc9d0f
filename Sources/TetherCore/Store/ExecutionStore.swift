import NIOCore
import RedisKit

/// Reads and changes executions in Redis; every change is one Lua script (atomic).
public struct ExecutionStore: Sendable {
    /// The Redis client: one server or a cluster.
    public let redis: any RedisClientProtocol
    /// The key schema.
    public let keys: Keys
    /// Approximate most entries per event stream.
    public let maxLength: Int
    /// Seconds keys live after the execution finished.
    public let retentionSeconds: Int
    /// What this store appended (shared by its copies).
    public let counters = StoreCounters()

    /// Makes a store.
    public init(redis: any RedisClientProtocol, keys: Keys, maxLength: Int = 100_000, retentionSeconds: Int = 604_800) {
        self.redis = redis
        self.keys = keys
        self.maxLength = maxLength
        self.retentionSeconds = retentionSeconds
    }

    /// Makes a store with the configuration's key prefix and stream limits (what gateways and workers use).
    public init(redis: any RedisClientProtocol, config: TetherConfig) {
        self.init(
            redis: redis, keys: config.redis.keys, maxLength: config.streams.maxLength,
            retentionSeconds: config.streams.retentionSeconds)
    }

    /// What ``create(id:tenant:agentId:keyId:conversationId:input:forwardedHeaders:idempotency:)`` did.
    public enum Creation: Sendable, Hashable {
        /// Created; the first event as the script stored it (the gateway writes its frame from this, without
        /// reading the log).
        case created(firstEvent: StoredEvent)
        /// The idempotency key already named an execution of the same request: nothing was created.
        case existing(executionID: String)
        /// The idempotency key already named an execution made from another request body: nothing was created.
        case reused(executionID: String)
        /// The idempotency record belongs to another tenant or agent (it cannot, but for a SHA-256 collision):
        /// nothing was created, nothing is replayed.
        case foreign
        /// Another execution runs on the conversation: nothing was created.
        case busy(runningExecutionID: String)
    }

    /// An `Idempotency-Key` and the digest of the request it came with.
    public struct Idempotency: Sendable, Hashable {
        /// The header's value.
        public var key: String
        /// Hex SHA-256 of the request, as ``ExecutionStore/requestDigest(_:)`` makes it.
        public var requestDigest: String
        /// Seconds the key keeps naming its execution.
        public var seconds: Int

        /// Makes one.
        public init(key: String, requestDigest: String, seconds: Int) {
            self.key = key
            self.requestDigest = requestDigest
            self.seconds = seconds
        }
    }

    /// Hex SHA-256 of a request's canonical JSON (sorted keys): equal for the same request, whatever its
    /// whitespace or member order.
    public static func requestDigest(_ request: JSON) -> String {
        Digest.hex(Digest.sha256(Array(request.rendered.utf8)))
    }

    /// Creates the record, the first event and the job in one script, unless `idempotency` already names an
    /// execution of the same tenant and agent. `forwardedHeaders` are kept apart from the input, only until the
    /// execution ends.
    ///
    /// In the sharded layout the idempotency record has a slot of its own: it is reserved first
    /// (``Scripts/reserveIdempotency``), then the execution is created, and the reservation is released when the
    /// create made nothing (the conversation was busy). A reservation whose execution never appeared (its gateway
    /// died between the two) is taken over after ``staleReservationMilliseconds``.
    public func create(
        id: String, tenant: String, agentId: String, keyId: String, conversationId: String, input: JSON,
        forwardedHeaders: [String: String] = [:], idempotency: Idempotency? = nil
    ) async throws -> Creation {
        let now = Identifiers.nowMilliseconds()
        let started: JSON = [
            "type": .string(EventType.started.rawValue), "executionId": .string(id), "agentId": .string(agentId),
            "conversationId": .string(conversationId),
        ]
        let idempotencyKey = keys.idempotency(tenant: tenant, agent: agentId, key: idempotency?.key ?? "")
        let apart = keys.isSharded && idempotency != nil
        if apart, let idempotency {
            if let earlier = try await reserve(idempotency, key: idempotencyKey, id: id, tenant: tenant, agent: agentId)
            {
                return earlier
            }
        }
        let headers = forwardedHeaders.isEmpty ? "" : JSON.object(forwardedHeaders.mapValues { .string($0) }).rendered
        var scriptKeys = [
            keys.meta(id), keys.events(id), keys.jobs(for: id),
            keys.conversationState(tenant: tenant, conversationID: conversationId),
            keys.conversation(tenant: tenant, conversationID: conversationId),
        ]
        if !keys.isSharded { scriptKeys.append(idempotencyKey) }
        let reply: RESPValue
        do {
            reply = try await redis.run(
                script(Scripts.create), keys: scriptKeys,
                arguments: [
                    id, tenant, agentId, keyId, conversationId, Identifiers.isoTimestamp(milliseconds: now), Int64(now),
                    started.rendered, input.rendered, keys.tail(id), maxLength,
                    apart ? "" : idempotency.map { String($0.seconds) } ?? "", idempotency?.requestDigest ?? "",
                    idempotency?.key ?? "", headers, keys.jobsBell(shard: keys.shard(of: id)),
                ])
        } catch let error as RedisError where apart && error.code == .serverError {
            _ = try? await redis.run(Scripts.releaseIdempotency, keys: [idempotencyKey], arguments: [id])
            throw error
        }
        if let pair = reply.array, pair.count == 2, let kind = pair[0].string, let existing = pair[1].string {
            if apart { _ = try? await redis.run(Scripts.releaseIdempotency, keys: [idempotencyKey], arguments: [id]) }
            switch kind {
            case "EXISTING": return .existing(executionID: existing)
            case "REUSED": return .reused(executionID: existing)
            case "BUSY": return .busy(runningExecutionID: existing)
            default: return .foreign
            }
        }
        let first = try reply.requireString()
        counters.appended(1)
        return .created(
            firstEvent: StoredEvent(
                id: first, type: EventType.started.rawValue, data: started.rendered, timestamp: Int64(now),
                status: ExecutionStatus.running.rawValue))
    }

    /// How long a reservation of an `Idempotency-Key` may name an execution that does not exist before another
    /// request takes the key over (the gateway that reserved it died before creating it).
    public static let staleReservationMilliseconds: Int64 = 10_000

    /// Reserves the key for `id` (sharded layout); returns `nil` when reserved, or what an earlier request made.
    private func reserve(_ idempotency: Idempotency, key: String, id: String, tenant: String, agent: String)
        async throws -> Creation?
    {
        for _ in 0..<2 {
            let now = Identifiers.nowMilliseconds()
            let reply = try await redis.run(
                Scripts.reserveIdempotency, keys: [key],
                arguments: [
                    id, tenant, agent, idempotency.key, idempotency.requestDigest, idempotency.seconds, Int64(now),
                ]
            ).requireArray()
            guard reply.count == 3, let kind = reply[0].string, let existing = reply[1].string else {
                throw RedisError(.unexpectedReply, "reserveIdempotency returned \(reply)")
            }
            switch kind {
            case "RESERVED": return nil
            case "FOREIGN": return .foreign
            default: break
            }
            // The execution it names is created right after its reservation: wait for it a little.
            let reservedAt = reply[2].string.flatMap { Int64($0) } ?? 0
            while true {
                if try await redis.send("EXISTS", keys.meta(existing)).int == 1 {
                    return kind == "REUSED" ? .reused(executionID: existing) : .existing(executionID: existing)
                }
                if Identifiers.nowMilliseconds() - reservedAt > Self.staleReservationMilliseconds { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            _ = try await redis.run(Scripts.releaseIdempotency, keys: [key], arguments: [existing])
        }
        throw RedisError(.serverError, "CONFLICT the idempotency key is being taken by another request")
    }

    /// `script` as this store's layout runs it.
    func script(_ script: RedisScript) -> RedisScript { Scripts.forLayout(script, keys) }

    /// The first `count` items of a conversation's history (JSON, oldest first).
    public func history(tenant: String, conversationID: String, count: Int) async throws -> [JSON] {
        guard count > 0 else { return [] }
        let reply = try await redis.send(
            "LRANGE", keys.conversation(tenant: tenant, conversationID: conversationID), 0, count - 1)
        return (reply.array ?? []).compactMap { $0.string.flatMap { try? JSON.parse($0) } }
    }

    /// Appends an execution's items to its conversation's history, once (see ``Scripts/appendHistory``), and frees
    /// the conversation. Keeps the newest `maxMessages` items; the history lives as long as executions do after
    /// its last change.
    public func appendHistory(
        tenant: String, conversationID: String, executionID: String, items: [JSON], maxMessages: Int
    ) async throws {
        var arguments: [any RedisArgument] = [
            executionID, maxMessages, retentionSeconds,
            Identifiers.isoTimestamp(milliseconds: Identifiers.nowMilliseconds()),
        ]
        arguments += items.map { $0.rendered as any RedisArgument }
        try await redis.run(
            Scripts.appendHistory,
            keys: [
                keys.conversationState(tenant: tenant, conversationID: conversationID),
                keys.conversation(tenant: tenant, conversationID: conversationID),
            ], arguments: arguments)
    }

    /// Frees the conversation if `executionID` holds it; returns whether it did.
    @discardableResult
    public func releaseConversation(tenant: String, conversationID: String, executionID: String) async throws -> Bool {
        try await redis.run(
            Scripts.releaseConversation, keys: [keys.conversationState(tenant: tenant, conversationID: conversationID)],
            arguments: [executionID]
        ).int == 1
    }

    /// The headers the execution was created with for its tools, while it runs (`[:]` once it has ended). Never
    /// logged nor returned by the API: they may hold credentials.
    public func forwardedHeaders(_ id: String) async throws -> [String: String] {
        guard let text = try await redis.send("HGET", keys.meta(id), "forwardedHeaders").string,
            case .object(let object) = try? JSON.parse(text)
        else { return [:] }
        return object.compactMapValues(\.stringValue)
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

    /// The input the execution was created with (`{"messages":[…]}`), or `nil`.
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
    /// `decidedBy` is `user` for a decision sent to the API, `system` for one the approval deadline made.
    public func decide(
        _ id: String, toolCallID: String, approved: Bool, reason: String?, decidedBy: String = "user"
    ) async throws -> DecisionOutcome {
        let now = Identifiers.nowMilliseconds()
        let iso = Identifiers.isoTimestamp(milliseconds: now)
        let reasonJSON: JSON = reason.map { .string($0) } ?? .null
        let decision: JSON = [
            "approved": .bool(approved), "reason": reasonJSON, "decidedAt": .string(iso),
            "decidedBy": .string(decidedBy),
        ]
        let event: JSON = [
            "type": .string(EventType.approvalResponse.rawValue), "toolCallId": .string(toolCallID),
            "approved": .bool(approved), "reason": reasonJSON, "decidedBy": .string(decidedBy),
        ]
        do {
            let reply = try await redis.run(
                script(Scripts.decide),
                keys: [
                    keys.meta(id), keys.events(id), keys.approvals(id), keys.jobs(for: id), keys.deadlines(for: id),
                    keys.waiting(for: id),
                ],
                arguments: [
                    toolCallID, approved ? "true" : "false", decision.rendered, event.rendered, iso, Int64(now),
                    keys.tail(id), maxLength, id, keys.jobsBell(shard: keys.shard(of: id)),
                ])
            if reply.string == "REPEATED" { return .repeated }
            counters.appended(1)
            return .recorded
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

    /// Cancels the execution (see ``Scripts/cancel``): stored first, then announced to its worker, so it takes
    /// effect whether a worker runs it or not.
    public func cancel(_ id: String) async throws -> CancelOutcome {
        let now = Identifiers.nowMilliseconds()
        let error: JSON = [
            "type": .string(EventType.error.rawValue), "code": "cancelled", "message": "The execution was cancelled.",
        ]
        let finish: JSON = ["type": .string(EventType.finish.rawValue), "status": "cancelled"]
        do {
            let reply = try await redis.run(
                script(Scripts.cancel),
                keys: [
                    keys.meta(id), keys.events(id), keys.approvals(id), keys.deadlines(for: id), keys.checkpoint(id),
                    keys.waiting(for: id),
                ],
                arguments: [
                    error.rendered, finish.rendered, Identifiers.isoTimestamp(milliseconds: now), Int64(now),
                    keys.tail(id), keys.control(id), maxLength, retentionSeconds, id,
                ])
            if reply.string == "ALREADY" { return .alreadyCancelled }
            counters.appended(2, finished: [ExecutionStatus.cancelled.rawValue])
            return .cancelled
        } catch let error as RedisError where error.code == .serverError {
            switch error.serverErrorPrefix {
            case "NOTFOUND": return .executionNotFound
            case "FINISHED": return .finished
            default: throw error
            }
        }
    }

    /// What an append wrote, and what came before it.
    public struct Appended: Sendable, Equatable {
        /// The newest entry's id before the append ('' for none): when it is not the newest the caller knew of,
        /// someone else (a decision, a cancel) appended in between.
        public var previous: String
        /// The new entries' ids.
        public var ids: [String]

        /// What an append returned.
        public init(previous: String, ids: [String]) {
            self.previous = previous
            self.ids = ids
        }
    }

    /// Appends events for the lease holder `fence` (see ``Scripts/append``).
    ///
    /// With a `checkpoint`, its state is stored as the state through the last new entry, if the log's newest entry
    /// before the append is still the one the checkpoint names (its `after`). `ownLast` is the newest entry the caller
    /// appended itself: when the log lost it (a failover), the append fails with ``AppendError/diverged``.
    @discardableResult
    public func append(
        _ id: String, fence: Int, events: [NewEvent], checkpoint: Checkpoint? = nil, after ownLast: String? = nil
    ) async throws -> Appended {
        guard !events.isEmpty else { return Appended(previous: "", ids: []) }
        let appended: Appended
        do {
            appended = try Self.appendedIDs(
                try await redis.run(
                    script(Scripts.append), keys: appendKeys(id),
                    arguments: appendArguments(id, fence, events, checkpoint: checkpoint, after: ownLast)))
        } catch {
            throw Self.appendError(error)
        }
        count(events)
        return appended
    }

    /// Counts appended events, and the executions they finish.
    private func count(_ events: [NewEvent]) {
        counters.appended(
            events.count, finished: events.filter { $0.type == .finish }.map { $0.status?.rawValue ?? "unknown" })
    }

    /// ``append(_:fence:events:checkpoint:after:)`` without a checkpoint and without suspending the caller, for code
    /// driven by event-loop callbacks (see ``RedisClientProtocol/submit(_:)``): the future completes with what was
    /// appended or the same errors.
    public func submitAppend(_ id: String, fence: Int, events: [NewEvent], after ownLast: String? = nil)
        -> EventLoopFuture<Appended>
    {
        guard !events.isEmpty else {
            return redis.eventLoopGroup.any().makeSucceededFuture(Appended(previous: "", ids: []))
        }
        let reply = redis.submit(
            script(Scripts.append), keys: appendKeys(id), arguments: appendArguments(id, fence, events, after: ownLast))
        let promise = reply.eventLoop.makePromise(of: Appended.self)
        reply.whenComplete { [self] result in
            do {
                promise.succeed(try Self.appendedIDs(result.get()))
                count(events)
            } catch {
                promise.fail(Self.appendError(error))
            }
        }
        return promise.futureResult
    }

    private func appendKeys(_ id: String) -> [String] {
        [keys.meta(id), keys.events(id), keys.approvals(id), keys.checkpoint(id)]
    }

    private func appendArguments(
        _ id: String, _ fence: Int, _ events: [NewEvent], checkpoint: Checkpoint? = nil, after ownLast: String?
    ) -> [any RedisArgument] {
        let now = Identifiers.nowMilliseconds()
        var arguments: [any RedisArgument] = [
            fence, keys.tail(id), Identifiers.isoTimestamp(milliseconds: now), Int64(now), maxLength, retentionSeconds,
            checkpoint?.state ?? "", checkpoint?.after ?? "", ownLast ?? "",
        ]
        arguments.reserveCapacity(arguments.count + 5 * events.count)
        for event in events {
            arguments.append(event.type.rawValue)
            arguments.append(event.renderedData)
            arguments.append(event.status?.rawValue ?? "")
            arguments.append(event.approvalField?.field ?? "")
            arguments.append(event.approvalField?.value ?? "")
        }
        return arguments
    }

    private static func appendedIDs(_ reply: RESPValue) throws -> Appended {
        let values = try reply.requireArray().map { try $0.requireString() }
        guard let previous = values.first else { throw RedisError(.unexpectedReply, "append returned nothing") }
        return Appended(previous: previous, ids: Array(values.dropFirst()))
    }

    /// The script's error replies as ``AppendError``s; other errors unchanged.
    private static func appendError(_ error: any Error) -> any Error {
        guard let error = error as? RedisError, error.code == .serverError else { return error }
        switch error.serverErrorPrefix {
        case "FENCED": return AppendError.fenced
        case "FINISHED": return AppendError.finished
        case "NOTFOUND": return AppendError.notFound
        case "DIVERGED": return AppendError.diverged
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
}
