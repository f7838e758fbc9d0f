import RedisKit

/// An agent state a worker stores with an append (see ``ExecutionStore/append(_:fence:events:checkpoint:after:)``).
public struct Checkpoint: Sendable, Hashable {
    /// The state, as the worker encodes it.
    public var state: String
    /// The id of the log's newest entry as the worker knows it before the append: the checkpoint is stored only if
    /// nobody appended after it.
    public var after: String

    /// Makes one.
    public init(state: String, after: String) {
        self.state = state
        self.after = after
    }
}

/// What ``ExecutionStore/park(_:fence:jobEntryID:deadline:toolCallIDs:)`` did.
public enum ParkOutcome: Sendable, Hashable {
    /// The job left the jobs stream; a decision, a cancel or the deadline brings it back.
    case parked
    /// One of the calls was decided already: nothing changed.
    case decided
}

extension ExecutionStore {
    /// Parks the execution until a decision on one of `toolCallIDs` (see ``Scripts/park``); `deadline` is the
    /// earliest approval deadline, in milliseconds since the epoch. Throws ``AppendError`` like an append.
    public func park(
        _ id: String, fence: Int, jobEntryID: String, deadline: Int64, toolCallIDs: [String]
    ) async throws -> ParkOutcome {
        let now = Identifiers.nowMilliseconds()
        let arguments: [any RedisArgument] =
            [fence, keys.jobsGroup, jobEntryID, deadline, id, Identifiers.isoTimestamp(milliseconds: now), now]
            + toolCallIDs.map { $0 as any RedisArgument }
        do {
            let reply = try await redis.run(
                Scripts.park,
                keys: [
                    keys.meta(id), keys.approvals(id), keys.jobs(for: id), keys.deadlines(for: id),
                    keys.waiting(for: id),
                ],
                arguments: arguments)
            return reply.string == "DECIDED" ? .decided : .parked
        } catch let error as RedisError where error.code == .serverError {
            switch error.serverErrorPrefix {
            case "FENCED": throw AppendError.fenced
            case "FINISHED": throw AppendError.finished
            case "NOTFOUND": throw AppendError.notFound
            default: throw error
            }
        }
    }

    /// Claims up to `limit` parked executions of `shard` whose deadline has passed until `claimEnd` (milliseconds);
    /// returns their ids (see ``Scripts/claimDeadlines``).
    public func claimDeadlines(shard: Int, now: Int64, limit: Int, claimEnd: Int64) async throws -> [String] {
        let reply = try await redis.run(
            Scripts.claimDeadlines, keys: [keys.deadlines(shard: shard)], arguments: [now, limit, claimEnd])
        return (reply.array ?? []).compactMap(\.string)
    }

    /// Moves a claimed deadline to `next` (milliseconds), or drops it for `nil`, unless its score moved since the
    /// claim (see ``Scripts/settleDeadline``).
    public func settleDeadline(_ id: String, claimEnd: Int64, next: Int64?) async throws {
        _ = try await redis.run(
            Scripts.settleDeadline, keys: [keys.deadlines(for: id), keys.waiting(for: id)],
            arguments: [id, claimEnd, next.map { String($0) } ?? ""])
    }

    /// The stored checkpoint: the state and the id of the last entry it covers, or `nil`.
    public func checkpoint(_ id: String) async throws -> (state: String, through: String)? {
        let reply = try await redis.send("HMGET", keys.checkpoint(id), "state", "through").array ?? []
        guard reply.count == 2, let state = reply[0].string, let through = reply[1].string else { return nil }
        return (state, through)
    }
}

extension ExecutionStore {
    /// How many executions are parked waiting for a decision (the deployment's, over every shard), and since when
    /// the oldest of them waits (ms since the epoch), from the waiting sets.
    public func waiting() async throws -> (count: Int, oldestSince: Int64?) {
        Self.waiting(try await redis.send(batch: waitingCommands)[...])
    }

    /// The commands ``waiting()`` sends, two per shard (for callers that batch them with others).
    public var waitingCommands: [RedisCommand] {
        keys.shards.flatMap { shard in
            [
                RedisCommand("ZCARD", keys.waiting(shard: shard)),
                RedisCommand("ZRANGE", keys.waiting(shard: shard), 0, 0, "WITHSCORES"),
            ]
        }
    }

    /// What the replies of ``waitingCommands`` say.
    public static func waiting(_ replies: ArraySlice<RESPValue>) -> (count: Int, oldestSince: Int64?) {
        var count = 0
        var oldest: Int64?
        var index = replies.startIndex
        while index + 1 < replies.endIndex {
            count += replies[index].int ?? 0
            let pair = replies[index + 1].array
            if let pair, pair.count == 2, let score = pair[1].string.flatMap({ Double($0) }) {
                oldest = min(oldest ?? Int64(score), Int64(score))
            }
            index += 2
        }
        return (count, oldest)
    }
}
