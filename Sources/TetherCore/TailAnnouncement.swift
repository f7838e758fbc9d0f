/// What an append publishes on an execution's tail channel: the id that was the newest before it, then the new
/// entries themselves, so that a gateway whose cursor is that previous id can deliver them without reading the
/// stream ("announce, then read", with the entry carried in the announcement and a previous-id check).
///
/// Format: `prevId` then, per entry, RS (0x1E) and `id US type US ts US status US data` (US is 0x1F; `status` is
/// empty when the entry does not move it). JSON text never holds raw control characters, so the separators cannot
/// appear in `data`.
public struct TailAnnouncement: Sendable, Hashable {
    /// The id of the newest entry before these ones (`0-0` for the first).
    public var previousID: StreamID
    /// The new entries, in order.
    public var events: [StoredEvent]

    /// Parses an announcement; `nil` for anything else (a bare id from an older writer, say): read the stream then.
    public init?(_ payload: [UInt8]) {
        let records = payload.split(separator: 0x1E, omittingEmptySubsequences: false)
        guard records.count >= 2, let previous = StreamID(String(decoding: records[0], as: UTF8.self)) else {
            return nil
        }
        var events: [StoredEvent] = []
        events.reserveCapacity(records.count - 1)
        for record in records.dropFirst() {
            let fields = record.split(separator: 0x1F, maxSplits: 4, omittingEmptySubsequences: false)
            guard fields.count == 5, let ts = Int64(String(decoding: fields[2], as: UTF8.self)) else { return nil }
            let status = String(decoding: fields[3], as: UTF8.self)
            events.append(
                StoredEvent(
                    id: String(decoding: fields[0], as: UTF8.self), type: String(decoding: fields[1], as: UTF8.self),
                    data: String(decoding: fields[4], as: UTF8.self), timestamp: ts,
                    status: status.isEmpty ? nil : status))
        }
        previousID = previous
        self.events = events
    }
}
