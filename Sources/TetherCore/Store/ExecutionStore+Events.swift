import RedisKit

/// Where a stream resumes for Inkeep's `x-stream-start-index` (the number of frames the client already has).
public enum FramePosition: Sendable, Hashable {
    /// Every frame is still to come: start at the beginning.
    case start
    /// Resume after this entry.
    case after(StreamID)
    /// Some of the frames the client lacks were trimmed away: resume at the oldest entry kept (a gap frame first).
    case trimmed(resumeFrom: StreamID?)
}

extension ExecutionStore {
    /// Entries the skip script steps over per call: one call holds Redis for a bounded time.
    static let skipPage = 1000

    /// The position after the first `frames` frames of the execution's stream, found without reading the entries
    /// into the gateway: the skip script steps over up to ``skipPage`` entries per call and returns only the id it
    /// stopped at. Frames trimmed from the stream (`streams.maxLength`) count as the frames they were. Past the
    /// end, the position is the newest entry.
    public func position(_ id: String, afterFrames frames: Int) async throws -> FramePosition {
        guard frames > 0 else { return .start }
        guard let history = try await history(id) else { return .start }
        let trimmed = max(0, history.entriesAdded - history.length)
        if frames < trimmed { return .trimmed(resumeFrom: history.firstID) }
        var remaining = frames - trimmed
        if remaining == 0 { return .start }
        var cursor = "-"
        var last: StreamID?
        while remaining > 0 {
            let reply = try await redis.run(
                Scripts.skip, keys: [keys.events(id)], arguments: [cursor, min(remaining, Self.skipPage)]
            ).requireArray()
            guard reply.count == 2, let stepped = reply[1].int, stepped > 0, let text = reply[0].string,
                let stop = StreamID(text)
            else { break }
            last = stop
            remaining -= stepped
            cursor = "(" + text
        }
        return last.map { .after($0) } ?? .start
    }

    /// Events after `cursor` (exclusive; from the start when `nil`), at most `count`.
    public func events(_ id: String, after cursor: StreamID?, count: Int = 1000) async throws -> [StoredEvent] {
        // Nothing comes after the largest id (and Redis refuses an exclusive range that starts there).
        if cursor == StreamID(milliseconds: .max, sequence: .max) { return [] }
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

    /// Every entry of the execution's stream as stored, with all its fields (`fence` too), for tools that show them.
    public func allEntries(_ id: String) async throws -> [(id: String, fields: [String: String])] {
        var all: [(id: String, fields: [String: String])] = []
        var start = "-"
        while true {
            let page = Self.parseEntriesRaw(try await redis.send("XRANGE", keys.events(id), start, "+", "COUNT", 1000))
            all += page
            guard page.count == 1000, let last = page.last else { return all }
            start = "(" + last.id
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
