/// Which arguments of a command are keys: what a cluster client routes on (every key of one command must be in one
/// slot). Known for the commands RedisKit's users send; `nil` for any other.
extension RedisCommand {
    /// Where a command's keys are, as Redis's legacy key specs say (`COMMAND INFO`: first key, last key, step;
    /// a negative last counts from the end), or a rule of its own.
    enum KeySpec {
        /// No keys.
        case none
        /// Arguments `first`, `first + step`, … up to `last` (negative: from the end, -1 the last argument).
        case range(first: Int, last: Int, step: Int)
        /// `EVAL`/`EVALSHA`/`FCALL`: argument 2 says how many keys follow it.
        case numkeys
        /// `XREAD`/`XREADGROUP`: after `STREAMS`, the first half of the remaining arguments.
        case streams
        /// `XINFO` and `XGROUP`: a subcommand, then the key (`XINFO STREAM key`, `XGROUP CREATE key …`); the
        /// subcommands that take none (`HELP`) have none.
        case afterSubcommand
        /// `PUBSUB`: `SHARDNUMSUB` names shard channels, routed like keys (a cluster answers for its own slots);
        /// the other subcommands none.
        case pubsub
    }

    static let keySpecs: [String: KeySpec] = {
        var specs: [String: KeySpec] = [:]
        for name in [
            "PING", "INFO", "CLIENT", "CLUSTER", "SCRIPT", "CONFIG", "COMMAND", "HELLO", "AUTH", "SELECT", "DBSIZE",
            "FLUSHALL", "FLUSHDB", "PUBLISH", "SUBSCRIBE", "UNSUBSCRIBE", "PSUBSCRIBE", "PUNSUBSCRIBE", "ECHO", "TIME",
            "ASKING", "READONLY", "READWRITE", "MULTI", "EXEC", "DISCARD", "WAIT",
        ] {
            specs[name] = KeySpec.none
        }
        for name in [
            "GET", "SET", "SETNX", "GETDEL", "INCR", "INCRBY", "DECR", "EXPIRE", "PEXPIRE", "TTL", "PTTL", "PERSIST",
            "TYPE", "HSET", "HSETNX", "HGET", "HMGET", "HGETALL", "HDEL", "HINCRBY", "HEXISTS", "HKEYS", "HVALS",
            "HLEN", "XADD", "XRANGE", "XREVRANGE", "XLEN", "XACK", "XDEL", "XCLAIM", "XAUTOCLAIM", "XPENDING", "XTRIM",
            "XSETID", "ZADD", "ZREM", "ZCARD", "ZRANGE", "ZSCORE", "ZRANGEBYSCORE", "ZREVRANGE", "ZINCRBY", "SADD",
            "SREM", "SMEMBERS", "SISMEMBER", "SCARD", "LPUSH", "RPUSH", "LPOP", "RPOP", "LRANGE", "LTRIM", "LLEN",
            "SPUBLISH", "SSUBSCRIBE", "SUNSUBSCRIBE", "DUMP", "RESTORE",
        ] {
            specs[name] = .range(first: 1, last: 1, step: 1)
        }
        for name in ["DEL", "UNLINK", "EXISTS", "TOUCH", "MGET", "WATCH"] {
            specs[name] = .range(first: 1, last: -1, step: 1)
        }
        specs["MSET"] = .range(first: 1, last: -1, step: 2)
        specs["OBJECT"] = .range(first: 2, last: 2, step: 1)
        for name in ["EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"] { specs[name] = .numkeys }
        for name in ["XREAD", "XREADGROUP"] { specs[name] = .streams }
        for name in ["XINFO", "XGROUP"] { specs[name] = .afterSubcommand }
        specs["PUBSUB"] = .pubsub
        return specs
    }()

    /// The argument at `index` (0 is the name).
    public func argument(_ index: Int) -> ArraySlice<UInt8> {
        let start = index == 0 ? 0 : ends[index - 1]
        return storage[start..<ends[index]]
    }

    /// The keys this command touches, in order; `nil` when RedisKit does not know the command's keys.
    public var keys: [ArraySlice<UInt8>]? {
        guard let spec = Self.keySpecs[name] else { return nil }
        let count = self.count
        func upper(_ slice: ArraySlice<UInt8>) -> String { String(decoding: slice, as: UTF8.self).uppercased() }
        switch spec {
        case .none:
            return []
        case .range(let first, let last, let step):
            let end = last < 0 ? count + last : last
            guard first < count, first <= end else { return [] }
            return stride(from: first, through: min(end, count - 1), by: step).map(argument)
        case .numkeys:
            guard count > 2, let number = Int(String(decoding: argument(2), as: UTF8.self)), number >= 0,
                3 + number <= count
            else { return nil }
            return (3..<(3 + number)).map(argument)
        case .streams:
            guard let streams = (1..<count).first(where: { upper(argument($0)) == "STREAMS" }) else { return nil }
            let rest = count - streams - 1
            guard rest > 0, rest % 2 == 0 else { return nil }
            return ((streams + 1)...(streams + rest / 2)).map(argument)
        case .afterSubcommand:
            guard count > 1 else { return nil }
            if upper(argument(1)) == "HELP" { return [] }
            return count > 2 ? [argument(2)] : nil
        case .pubsub:
            guard count > 1 else { return nil }
            return upper(argument(1)) == "SHARDNUMSUB" ? (2..<count).map(argument) : []
        }
    }

    /// The one slot of this command's keys: `nil` for a command without keys; ``RedisError/Code/crossSlot`` when its
    /// keys are in different slots (a cluster refuses such a command: it is refused before it is sent), or when
    /// RedisKit does not know where its keys are.
    public func slot() throws(RedisError) -> Int? {
        guard let keys else {
            throw RedisError(.crossSlot, "the keys of \(name) are not known: it cannot be routed in a cluster")
        }
        guard let first = keys.first else { return nil }
        let slot = ClusterSlot.of(first)
        for key in keys.dropFirst() where ClusterSlot.of(key) != slot {
            throw RedisError(
                .crossSlot,
                "\(name) touches keys in different slots: \(String(decoding: first, as: UTF8.self)) (\(slot)) and "
                    + "\(String(decoding: key, as: UTF8.self)) (\(ClusterSlot.of(key)))")
        }
        return slot
    }
}
