import HTTPTypes
import Hummingbird
import NIOCore
import TetherCore

/// Reconnects in the UI message stream format (docs/protocol.md, "The UI message stream").
extension Gateway {
    /// The UI message stream of `record` from the client's cursor. The log so far is read and rendered once (a
    /// chunk's position depends on every entry before it), then the stream follows the live tail.
    func reconnectUIMessage(
        _ request: Request, _ context: GatewayRequestContext, _ record: ExecutionRecord, _ cursor: Cursor
    ) async throws -> Response {
        let events = try await store.allEvents(record.id)
        var counter = UIMessageRenderer(executionID: record.id)
        var chunks = 0
        for event in events {
            chunks += counter.chunks(event).count
            if event.isFinal { break }
        }
        let resume: UIMessageRenderer.Resume
        if let after = cursor.after {
            // No client has a chunk after the newest one: read it as "has everything so far".
            if let newest = events.last?.position, after.id > newest {
                resume = .after(newest, sub: nil)
            } else {
                resume = .after(after.id, sub: after.sub)
            }
        } else if let start = cursor.startIndex {
            resume = .index(start < 0 ? max(0, chunks + start) : start)
        } else {
            resume = .none
        }
        var renderer = UIMessageRenderer(executionID: record.id, resume: resume)
        var preamble = ByteBuffer()
        var complete = false
        for event in events where !complete {
            renderer.append(event, to: &preamble)
            complete = event.isFinal
        }
        var headers = Self.sseHeaders
        headers[.workflowRunID] = record.id
        headers[.uiMessageStream] = "v1"
        headers[.workflowStreamTailIndex] = String(chunks - 1)
        return streamResponse(
            request, context, id: record.id, renderer: renderer, after: events.last?.position, preamble: preamble,
            complete: complete, headers: headers)
    }
}
