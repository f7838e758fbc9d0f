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
        let events = try await deliveryStore.allEvents(record.id)
        let trimmed = events.first.map { $0.type != EventType.started.rawValue } ?? false
        let resume: UIMessageRenderer.Resume
        if let after = cursor.after {
            // No client has a chunk after the newest one: read it as "has everything so far".
            if let newest = events.last?.position, after.id > newest {
                resume = .after(newest, sub: nil)
            } else {
                resume = .after(after.id, sub: after.sub)
            }
        } else if let start = cursor.startIndex, !trimmed {
            if start < 0 {
                // Counted from the end: the number of chunks first (a render that writes nothing).
                var counter = UIMessageRenderer(executionID: record.id, resume: .index(.max))
                var nothing = ByteBuffer()
                for event in events { counter.append(event, to: &nothing) }
                resume = .index(max(0, counter.index + start))
            } else {
                resume = .index(start)
            }
        } else {
            // From the start; and when the log was trimmed, an index cannot be placed: the kept log again, after a
            // data-gap (duplicates rather than a silent hole).
            resume = .none
        }
        var renderer = UIMessageRenderer(executionID: record.id, resume: resume)
        var preamble = ByteBuffer()
        var complete = false
        for event in events where !complete {
            renderer.append(event, to: &preamble)
            complete = event.isFinal
        }
        if complete, case .index(let start) = resume, start > renderer.index {
            // The client counts more chunks than the execution has (a log rendered otherwise): give it the final
            // chunk again rather than a bare [DONE], after which WorkflowChatTransport would ask again at once.
            renderer = UIMessageRenderer(executionID: record.id, resume: .index(renderer.index - 1))
            preamble.clear()
            for event in events { renderer.append(event, to: &preamble) }
        }
        TetherMetrics.eventsDelivered.increment(by: Int64(events.count))
        var headers = Self.sseHeaders
        headers[.workflowRunID] = record.id
        headers[.uiMessageStream] = "v1"
        headers[.workflowStreamTailIndex] = String(renderer.index - 1)
        return streamResponse(
            request, context, id: record.id, renderer: renderer, after: events.last?.position, preamble: preamble,
            complete: complete, headers: headers)
    }
}
