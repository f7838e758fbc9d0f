import Foundation
import RedisKit

/// The Lua scripts that make Tether's state changes atomic. Each runs with `EVALSHA` (loaded on first use).
/// Errors are returned as `PREFIX message` so callers can tell them apart.
public enum Scripts {
    /// What several scripts need, put before each of their sources: `terminal(status)`, and `unpark(…)`, which takes a
    /// parked execution out of the deadline set and, when asked, queues its job again (see ``park``). The waiting set
    /// is left to the scripts: an execution stays in it while any of its requests is undecided.
    static let prelude = """
        local function terminal(status) return status == 'completed' or status == 'failed' or status == 'cancelled' end
        local function unpark(meta, deadlines, jobs, id, requeue)
            if redis.call('HDEL', meta, 'parked') == 0 then return false end
            redis.call('ZREM', deadlines, id)
            if requeue then redis.call('XADD', jobs, '*', 'executionId', id) end
            return true
        end

        """

    /// A script whose source starts with ``prelude``.
    static func withPrelude(_ body: String) -> RedisScript { RedisScript(prelude + body) }

    /// The scripts that announce, as the sharded layout runs them: `SPUBLISH` for `PUBLISH` (shard channels, in the
    /// slot of the execution's keys), by the single-Redis script's SHA-1.
    private static let shardedVariants: [String: RedisScript] = Dictionary(
        uniqueKeysWithValues: [create, append, decide, cancel].map { script in
            (script.sha1, RedisScript(script.source.replacingOccurrences(of: "'PUBLISH'", with: "'SPUBLISH'")))
        })

    /// `script` as `keys`' layout runs it (see ``shardedVariants``).
    public static func forLayout(_ script: RedisScript, _ keys: Keys) -> RedisScript {
        keys.isSharded ? shardedVariants[script.sha1] ?? script : script
    }

    /// Keeps an `Idempotency-Key` for an execution about to be created, where the record cannot be in the create
    /// script (the sharded layout: it has a slot of its own). ``create`` runs next; ``releaseIdempotency`` frees the
    /// key when it creates nothing.
    ///
    /// KEYS: idempotency record. ARGV: executionId, tenant, agent, key, requestDigest, TTL in seconds, nowMs.
    /// Returns `{'RESERVED', executionId}`, or what ``create`` returns for a record already there (`EXISTING`,
    /// `REUSED`, `FOREIGN`) with, third, when the record was made (ms).
    public static let reserveIdempotency = RedisScript(
        """
        local existing = redis.call('HMGET', KEYS[1], 'executionId', 'tenant', 'agent', 'requestDigest', 'reservedAt')
        if existing[1] then
            if existing[2] ~= ARGV[2] or existing[3] ~= ARGV[3] then return {'FOREIGN', '', '0'} end
            if existing[4] ~= ARGV[5] then return {'REUSED', existing[1], existing[5] or '0'} end
            return {'EXISTING', existing[1], existing[5] or '0'}
        end
        redis.call('HSET', KEYS[1], 'executionId', ARGV[1], 'tenant', ARGV[2], 'agent', ARGV[3], 'key', ARGV[4],
            'requestDigest', ARGV[5], 'reservedAt', ARGV[7])
        redis.call('EXPIRE', KEYS[1], ARGV[6])
        return {'RESERVED', ARGV[1], ARGV[7]}
        """)

    /// Deletes an idempotency record if it names the execution (one that was not created after all).
    ///
    /// KEYS: idempotency record. ARGV: executionId. Returns 1 when it deleted it.
    public static let releaseIdempotency = RedisScript(
        """
        if redis.call('HGET', KEYS[1], 'executionId') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """)

    /// Creates an execution: the record, its first event and its job, once.
    ///
    /// KEYS: meta, events, jobs, conversation state, conversation messages, then the idempotency record (single-Redis
    /// layout; in the sharded one the record is in another slot, and ``reserveIdempotency`` runs before). ARGV: id,
    /// tenant, agentId, keyId, conversationId, nowISO, nowMs, startedData, input, tailChannel, maxLength, idempotency
    /// TTL in seconds ('' when the request had no Idempotency-Key, or the record is kept apart), request digest, the
    /// Idempotency-Key, forwardedHeaders JSON ('' for none), the jobs bell channel ('' for none).
    /// Returns the first event's id; with an idempotency record already there, `{'EXISTING', executionId}` (same
    /// tenant, agent and request digest), `{'REUSED', executionId}` (another request body) or `{'FOREIGN', ''}`
    /// (another tenant or agent: never replayed); `{'BUSY', executionId}` while another execution runs on the
    /// conversation. The conversation's `running` is set to the new execution, and the record notes how long the
    /// history was (`historyLength`) and whether the conversation is new (`conversationNew`). Error `EXISTS` if the
    /// id is taken.
    public static let create = RedisScript(
        """
        if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('EXISTS execution already exists') end
        if ARGV[12] ~= '' then
            local existing = redis.call('HMGET', KEYS[6], 'executionId', 'tenant', 'agent', 'requestDigest')
            if existing[1] then
                if existing[2] ~= ARGV[2] or existing[3] ~= ARGV[3] then return {'FOREIGN', ''} end
                if existing[4] ~= ARGV[13] then return {'REUSED', existing[1]} end
                return {'EXISTING', existing[1]}
            end
        end
        local running = redis.call('HGET', KEYS[4], 'running')
        if running and running ~= '' then return {'BUSY', running} end
        if ARGV[12] ~= '' then
            redis.call('HSET', KEYS[6], 'executionId', ARGV[1], 'tenant', ARGV[2], 'agent', ARGV[3], 'key', ARGV[14],
                'requestDigest', ARGV[13])
            redis.call('EXPIRE', KEYS[6], ARGV[12])
        end
        local isNew = redis.call('EXISTS', KEYS[4]) == 0
        local historyLength = redis.call('LLEN', KEYS[5])
        redis.call('HSET', KEYS[4], 'running', ARGV[1], 'updatedAt', ARGV[6])
        local eid = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[11], '*',
            'type', 'execution-started', 'data', ARGV[8], 'ts', ARGV[7], 'status', 'running')
        redis.call('HSET', KEYS[1], 'id', ARGV[1], 'tenant', ARGV[2], 'agentId', ARGV[3], 'keyId', ARGV[4],
            'conversationId', ARGV[5], 'status', 'running', 'createdAt', ARGV[6], 'updatedAt', ARGV[6],
            'lastEventId', eid, 'fence', 0, 'input', ARGV[9], 'historyLength', historyLength,
            'conversationNew', isNew and '1' or '0')
        if ARGV[15] ~= '' then redis.call('HSET', KEYS[1], 'forwardedHeaders', ARGV[15]) end
        redis.call('XADD', KEYS[3], '*', 'executionId', ARGV[1])
        if ARGV[16] ~= '' then redis.call('PUBLISH', ARGV[16], '1') end
        redis.call('PUBLISH', ARGV[10], '0-0' .. string.char(30) .. eid .. string.char(31) .. 'execution-started'
            .. string.char(31) .. ARGV[7] .. string.char(31) .. 'running' .. string.char(31) .. ARGV[8])
        return eid
        """)

    /// Appends events for the worker holding the lease.
    ///
    /// KEYS: meta, events, approvals, checkpoint. ARGV: fence, tailChannel, nowISO, nowMs, maxLength,
    /// retentionSeconds, checkpoint state ('' for none), the id the worker holds for the newest entry, the newest
    /// entry the worker appended itself ('' for none), then per event: type, data, status ('' for none),
    /// approvalsField ('' for none), approvalsValue.
    /// Checks the fence (`FENCED` when another worker took over), that the execution has not finished (`FINISHED`),
    /// and that the worker's own newest entry is still in the log (`DIVERGED` when a failover lost it: the stream
    /// reaches back past it but lacks it; appending on would leave a hole); each entry carries the fence it was
    /// appended under. Moves the status with the event that causes it; an `error` event also sets the record's
    /// `error`; a terminal status drops the forwarded headers (they may hold credentials, and no step needs them
    /// any more) and the checkpoint, and starts the retention clock on every key. With a checkpoint state, stores it
    /// as the state through the last new entry, but only if the newest entry before this append is the one the
    /// worker holds (nobody else appended in between, so the state is exactly what the log says up to there).
    /// Announces the new entries on the tail channel (see ``TailAnnouncement``). Returns the newest entry's id before
    /// the append (the meta's `lastEventId`, or '' for none), then the new ids.
    public static let append = withPrelude(
        """
        local m = redis.call('HMGET', KEYS[1], 'fence', 'status', 'lastEventId')
        if not m[1] then return redis.error_reply('NOTFOUND execution not found') end
        if m[1] ~= ARGV[1] then return redis.error_reply('FENCED another worker owns this execution') end
        if terminal(m[2]) then return redis.error_reply('FINISHED execution already finished') end
        if ARGV[9] ~= '' and ARGV[9] ~= m[3] and #redis.call('XRANGE', KEYS[2], ARGV[9], ARGV[9]) == 0
            and #redis.call('XRANGE', KEYS[2], '-', ARGV[9], 'COUNT', 1) > 0 then
            return redis.error_reply('DIVERGED the log lost entries this worker appended')
        end
        local ids = {}
        local status = nil
        local fields = {'updatedAt', ARGV[3]}
        local announcement = {m[3] or '0-0'}
        for i = 10, #ARGV, 5 do
            local entry = {'type', ARGV[i], 'data', ARGV[i + 1], 'ts', ARGV[4], 'fence', ARGV[1]}
            if ARGV[i + 2] ~= '' then
                status = ARGV[i + 2]
                entry[#entry + 1] = 'status'
                entry[#entry + 1] = status
            end
            local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', unpack(entry))
            ids[#ids + 1] = id
            announcement[#announcement + 1] = id .. string.char(31) .. ARGV[i] .. string.char(31) .. ARGV[4]
                .. string.char(31) .. ARGV[i + 2] .. string.char(31) .. ARGV[i + 1]
            if ARGV[i + 3] ~= '' then redis.call('HSET', KEYS[3], ARGV[i + 3], ARGV[i + 4]) end
            if ARGV[i] == 'error' then
                fields[#fields + 1] = 'error'
                fields[#fields + 1] = ARGV[i + 1]
            end
        end
        fields[#fields + 1] = 'lastEventId'
        fields[#fields + 1] = ids[#ids]
        if status then
            fields[#fields + 1] = 'status'
            fields[#fields + 1] = status
        end
        redis.call('HSET', KEYS[1], unpack(fields))
        if terminal(status) then
            redis.call('HDEL', KEYS[1], 'forwardedHeaders')
            redis.call('DEL', KEYS[4])
            local ttl = tonumber(ARGV[6])
            redis.call('EXPIRE', KEYS[1], ttl)
            redis.call('EXPIRE', KEYS[2], ttl)
            if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ttl) end
        elseif ARGV[7] ~= '' and (m[3] or '') == ARGV[8] then
            redis.call('HSET', KEYS[4], 'state', ARGV[7], 'through', ids[#ids])
        end
        redis.call('PUBLISH', ARGV[2], table.concat(announcement, string.char(30)))
        table.insert(ids, 1, m[3] or '')
        return ids
        """)

    /// Records a human decision on a tool call, once, then announces it on the tail channel.
    ///
    /// KEYS: meta, events, approvals, jobs, deadlines, waiting. ARGV: toolCallId, approved ('true'|'false'),
    /// decisionJSON, eventData, nowISO, nowMs, tailChannel, maxLength, executionId, jobs bell channel ('' for none).
    /// Returns `RECORDED` or `REPEATED` (the same decision again). Errors: `NOTFOUND` (no execution),
    /// `NOTOOLCALL` (no such approval request), `CONFLICT` (the other decision was recorded), `FINISHED`.
    /// When no request is left undecided, the status moves from `suspended` back to `running`. A parked execution
    /// (see ``park``) leaves the deadline set and its job is queued again, in this same script: a decision is never
    /// recorded without a worker to act on it.
    public static let decide = withPrelude(
        """
        local current = redis.call('HMGET', KEYS[1], 'status', 'lastEventId')
        local status = current[1]
        if not status then return redis.error_reply('NOTFOUND execution not found') end
        if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then
            return redis.error_reply('NOTOOLCALL no approval was requested for this tool call')
        end
        local existing = redis.call('HGET', KEYS[3], ARGV[1] .. ':decision')
        if existing then
            local previous = cjson.decode(existing)
            if tostring(previous.approved) == ARGV[2] then return 'REPEATED' end
            return redis.error_reply('CONFLICT the opposite decision was already recorded')
        end
        if terminal(status) then return redis.error_reply('FINISHED execution already finished') end
        redis.call('HSET', KEYS[3], ARGV[1] .. ':decision', ARGV[3])
        local undecided = 0
        local fields = redis.call('HKEYS', KEYS[3])
        local present = {}
        for _, f in ipairs(fields) do present[f] = true end
        for _, f in ipairs(fields) do
            if not string.find(f, ':decision', 1, true) and not present[f .. ':decision'] then undecided = undecided + 1 end
        end
        local previous = current[2] or '0-0'
        local entry = {'type', 'tool-approval-response', 'data', ARGV[4], 'ts', ARGV[6]}
        local meta = {'updatedAt', ARGV[5]}
        local newStatus = ''
        if undecided == 0 and status == 'suspended' then
            newStatus = 'running'
            entry[#entry + 1] = 'status'
            entry[#entry + 1] = 'running'
            meta[#meta + 1] = 'status'
            meta[#meta + 1] = 'running'
        end
        local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*', unpack(entry))
        meta[#meta + 1] = 'lastEventId'
        meta[#meta + 1] = id
        redis.call('HSET', KEYS[1], unpack(meta))
        -- Waiting for a human until nothing is undecided, parked or not (a re-park keeps the first time).
        if undecided == 0 then redis.call('ZREM', KEYS[6], ARGV[9]) end
        if unpark(KEYS[1], KEYS[5], KEYS[4], ARGV[9], true) and ARGV[10] ~= '' then
            redis.call('PUBLISH', ARGV[10], '1')
        end
        redis.call('PUBLISH', ARGV[7], previous .. string.char(30) .. id .. string.char(31)
            .. 'tool-approval-response' .. string.char(31) .. ARGV[6] .. string.char(31) .. newStatus .. string.char(31)
            .. ARGV[4])
        return 'RECORDED'
        """)

    /// Cancels an execution, once, whether a worker runs it or not: the status becomes `cancelled` with an `error`
    /// (`cancelled`) and the `finish` event, the forwarded headers and the checkpoint go, a parked execution leaves
    /// the deadline set, the retention clock starts, and the control channel tells the worker that runs it (if any)
    /// to stop.
    ///
    /// KEYS: meta, events, approvals, deadlines, checkpoint, waiting. ARGV: errorData, finishData, nowISO, nowMs,
    /// tailChannel, controlChannel, maxLength, retentionSeconds, executionId. Returns `CANCELLED` or `ALREADY` (it was
    /// cancelled before). Errors: `NOTFOUND`, `FINISHED` (it completed or failed).
    public static let cancel = withPrelude(
        """
        local m = redis.call('HMGET', KEYS[1], 'status', 'lastEventId')
        if not m[1] then return redis.error_reply('NOTFOUND execution not found') end
        if m[1] == 'cancelled' then return 'ALREADY' end
        if m[1] == 'completed' or m[1] == 'failed' then return redis.error_reply('FINISHED execution already finished') end
        local e = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'type', 'error', 'data', ARGV[1], 'ts', ARGV[4])
        local f = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', 'type', 'finish', 'data', ARGV[2], 'ts', ARGV[4],
            'status', 'cancelled')
        redis.call('HSET', KEYS[1], 'status', 'cancelled', 'updatedAt', ARGV[3], 'lastEventId', f, 'error', ARGV[1])
        redis.call('HDEL', KEYS[1], 'forwardedHeaders')
        redis.call('DEL', KEYS[5])
        redis.call('ZREM', KEYS[6], ARGV[9])
        unpark(KEYS[1], KEYS[4], nil, ARGV[9], false)
        local ttl = tonumber(ARGV[8])
        redis.call('EXPIRE', KEYS[1], ttl)
        redis.call('EXPIRE', KEYS[2], ttl)
        if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ttl) end
        local us = string.char(31)
        redis.call('PUBLISH', ARGV[5], (m[2] or '0-0') .. string.char(30) .. e .. us .. 'error' .. us .. ARGV[4] .. us
            .. '' .. us .. ARGV[1] .. string.char(30) .. f .. us .. 'finish' .. us .. ARGV[4] .. us .. 'cancelled' .. us
            .. ARGV[2])
        redis.call('PUBLISH', ARGV[6], 'cancel')
        return 'CANCELLED'
        """)

    /// Parks an execution that waits for human decisions: its job leaves the jobs stream (acknowledged and deleted)
    /// and the execution joins the deadline set, scored by its earliest approval deadline, so that it holds no
    /// worker at all while it waits. The decide script queues its job again; the cancel script takes it out.
    ///
    /// KEYS: meta, approvals, jobs, deadlines, waiting. ARGV: fence, jobsGroup, job entry id, deadline (ms),
    /// executionId, nowISO, nowMs, then the toolCallIds waited for. The waiting set scores it by when it parked. Returns `PARKED`, or `DECIDED` when one of them was decided already
    /// (nothing changed: the worker reads the decision and goes on). Errors: `NOTFOUND`, `FENCED`, `FINISHED`.
    public static let park = withPrelude(
        """
        local m = redis.call('HMGET', KEYS[1], 'fence', 'status')
        if not m[1] then return redis.error_reply('NOTFOUND execution not found') end
        if m[1] ~= ARGV[1] then return redis.error_reply('FENCED another worker owns this execution') end
        if terminal(m[2]) then return redis.error_reply('FINISHED execution already finished') end
        for i = 8, #ARGV do
            if redis.call('HEXISTS', KEYS[2], ARGV[i] .. ':decision') == 1 then return 'DECIDED' end
        end
        redis.call('HSET', KEYS[1], 'parked', ARGV[6])
        redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
        redis.call('ZADD', KEYS[5], 'NX', ARGV[7], ARGV[5])
        redis.call('XACK', KEYS[3], ARGV[2], ARGV[3])
        redis.call('XDEL', KEYS[3], ARGV[3])
        return 'PARKED'
        """)

    /// Takes up to a number of parked executions whose approval deadline has passed, for one worker to deny their
    /// overdue requests: each one's score moves to the end of the claim, so that if that worker dies, the deadline
    /// comes due again for another.
    ///
    /// KEYS: deadlines. ARGV: nowMs, limit, claim end (ms). Returns the executionIds.
    public static let claimDeadlines = RedisScript(
        """
        local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
        for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
        return due
        """)

    /// Settles a claimed deadline: moves it to a new score (the earliest deadline still ahead), or drops it when
    /// there is none (its requests are decided, its execution ended or is gone), unless it changed since the claim
    /// (the execution was decided, unparked and parked again meanwhile).
    ///
    /// KEYS: deadlines, waiting. ARGV: executionId, the claim's score, the new score ('' to drop: from the waiting set
    /// too). Returns 1 when it changed.
    public static let settleDeadline = RedisScript(
        """
        local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
        if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
        if ARGV[3] == '' then
            redis.call('ZREM', KEYS[2], ARGV[1])
            return redis.call('ZREM', KEYS[1], ARGV[1])
        end
        redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
        return 1
        """)

    /// Takes the lease of an execution: raises the fence (so the previous owner's appends fail) and names the owner.
    ///
    /// KEYS: meta. ARGV: owner, nowISO. Returns `{fence, status}`, or error `NOTFOUND`.
    public static let claim = RedisScript(
        """
        if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOTFOUND execution not found') end
        local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
        redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'claimedAt', ARGV[2])
        return {fence, redis.call('HGET', KEYS[1], 'status')}
        """)

    /// Appends an execution's exchange to its conversation's history, once, and frees the conversation.
    ///
    /// KEYS: conversation state, conversation messages. ARGV: executionId, maxMessages, ttlSeconds, nowISO, then the
    /// items (JSON). Returns `APPENDED`, or `ALREADY` when this execution's items are there (a worker that resumed
    /// after appending them). Keeps the newest `maxMessages` items; both keys expire `ttlSeconds` after the last
    /// change.
    public static let appendHistory = RedisScript(
        """
        if redis.call('HGET', KEYS[1], 'lastExecution') == ARGV[1] then return 'ALREADY' end
        if #ARGV > 4 then
            redis.call('RPUSH', KEYS[2], unpack(ARGV, 5))
            redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
            redis.call('EXPIRE', KEYS[2], ARGV[3])
        end
        redis.call('HSET', KEYS[1], 'lastExecution', ARGV[1], 'updatedAt', ARGV[4])
        if redis.call('HGET', KEYS[1], 'running') == ARGV[1] then redis.call('HDEL', KEYS[1], 'running') end
        redis.call('EXPIRE', KEYS[1], ARGV[3])
        return 'APPENDED'
        """)

    /// Frees a conversation if this execution holds it (it failed, was cancelled, or ended long ago).
    ///
    /// KEYS: conversation state. ARGV: executionId. Returns 1 when it was freed.
    public static let releaseConversation = RedisScript(
        """
        if redis.call('HGET', KEYS[1], 'running') == ARGV[1] then
            redis.call('HDEL', KEYS[1], 'running')
            return 1
        end
        return 0
        """)

    /// Steps over entries of an event stream without returning them.
    ///
    /// KEYS: events. ARGV: start (`-` or `(<id>`), count. Returns `{lastId, stepped}`: the id of the last entry
    /// stepped over and how many there were (`{'', 0}` past the end).
    public static let skip = RedisScript(
        """
        local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
        if #entries == 0 then return {'', 0} end
        return {entries[#entries][1], #entries}
        """)
}
