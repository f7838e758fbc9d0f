import HTTPTypes
import Hummingbird
import TetherCore

/// Where a reconnect resumes, as its request says. Every cursor given is checked, used or not; an empty
/// `Last-Event-ID` or `lastEventId` counts as absent (an empty start index is not a number).
extension Gateway {
    /// A cursor, by chunk or by count.
    struct Cursor {
        /// The last chunk the client has (`Last-Event-ID`, else `lastEventId`): an entry id, with the chunk's index
        /// within the entry in the UI message format (`1764425001234-0:2`; `sub` `nil` for all of the entry's).
        var after: (id: StreamID, sub: Int?)?
        /// How many frames (Inkeep) or chunks (UI message) the client has, when it gave no id: `startIndex` (UI
        /// message only; negative: all but that many), else `x-stream-start-index`.
        var startIndex: Int?
    }

    /// The cursor of a reconnect in `format`.
    static func cursor(_ request: Request, _ format: StreamFormat) throws -> Cursor {
        func chunkID(_ raw: String?, _ name: String) throws -> (id: StreamID, sub: Int?)? {
            guard let raw, !raw.isEmpty else { return nil }
            let parts = raw.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            if let id = StreamID(String(parts[0])) {
                if parts.count == 1 { return (id, nil) }
                if parts[1].utf8.count <= 18, let sub = number(parts[1]) { return (id, sub) }
            }
            throw APIError.badRequest(
                "invalid_last_event_id",
                "\(name) must be a stream id like 1764425001234-0 (or a chunk id, 1764425001234-0:2)")
        }
        let header = try chunkID(request.headers[.lastEventID], "Last-Event-ID")
        let query = try chunkID(request.uri.queryParameters.get("lastEventId"), "lastEventId")
        var startIndex: Int?
        if let text = request.uri.queryParameters.get("startIndex") {
            let negative = text.hasPrefix("-")
            guard let count = number(negative ? text.dropFirst() : Substring(text)) else {
                throw APIError.badRequest(
                    "invalid_stream_start_index", "startIndex must be an integer (negative counts from the end)")
            }
            if format == .uiMessage { startIndex = negative ? -count : count }
        }
        if let text = request.headers[.streamStartIndex] {
            guard let count = number(Substring(text)) else {
                throw APIError.badRequest(
                    "invalid_stream_start_index", "x-stream-start-index must be a non-negative integer (digits only)")
            }
            startIndex = startIndex ?? count
        }
        let after = header ?? query
        return Cursor(after: after, startIndex: after == nil ? startIndex : nil)
    }

    /// 1-19 decimal digits that fit an `Int`.
    private static func number(_ text: Substring) -> Int? {
        guard !text.isEmpty, text.utf8.count <= 19, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return Int(text)
    }
}
