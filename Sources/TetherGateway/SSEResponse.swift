import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycle
import TetherCore

/// Events the client asked for that the stream no longer holds (trimmed by `streams.maxLength`).
struct Gap {
    /// What the client had.
    enum Cursor {
        /// Everything up to this entry (`Last-Event-ID`).
        case id(StreamID)
        /// This many frames (`x-stream-start-index`).
        case startIndex(Int)
    }

    var after: Cursor
    /// The oldest entry kept, where the stream resumes.
    var resumeFrom: StreamID?
}

extension Gateway {
    static let sseHeaders: HTTPFields = [
        .contentType: "text/event-stream", .cacheControl: "no-cache", .accelBuffering: "no",
    ]

    /// The SSE response of an execution from `cursor` to its final frame: `preamble` first (a gap frame, or what a
    /// renderer made of the log so far), then the entries after `cursor`; when `complete`, the preamble holds the
    /// final frame and nothing follows it.
    ///
    /// The client going away is noticed through the connection's ``ConnectionGuard`` (its side closed, or the
    /// connection gone), which ends the stream's feed. The response does not read the connection's request parts
    /// for that, so once the stream has ended the connection stays open for the client's next request.
    func streamResponse<Renderer: StreamRenderer>(
        _ request: Request, _ context: GatewayRequestContext, id: String, renderer: Renderer,
        after cursor: StreamID?, preamble: ByteBuffer? = nil, complete: Bool = false, headers: HTTPFields
    ) -> Response {
        let channel = context.channel
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                TetherMetrics.sseClients.increment()
                defer { TetherMetrics.sseClients.decrement() }
                do {
                    if let preamble, preamble.readableBytes > 0 { try await writer.write(preamble) }
                    if !complete {
                        let inboundClosed = await ConnectionGuard.inboundClosed(of: channel)
                        var renderer = renderer
                        // The pump runs on the connection's event loop: its writes need no hop, and the streams' work
                        // is spread over the loops the way their connections are.
                        try await withTaskExecutorPreference(EventLoopTaskExecutor(channel.eventLoop)) {
                            try await self.pump(
                                id, renderer: &renderer, after: cursor, until: inboundClosed, writer: &writer)
                        }
                    }
                } catch is CancellationError {
                    // The server is shutting down.
                } catch {
                    // Headers are sent: end the response; the client reconnects with its Last-Event-ID.
                    self.logger.warning("stream of \(id) ended early: \(error)")
                }
                try? await writer.finish(nil)
            })
    }

    /// Writes the log from `cursor` to the final frame: catch-up from the stream, then live entries from the tailer;
    /// stops early when `inboundClosed` completes or the server shuts down.
    private func pump<Renderer: StreamRenderer>(
        _ id: String, renderer: inout Renderer, after cursor: StreamID?,
        until inboundClosed: EventLoopFuture<Void>?, writer: inout any ResponseBodyWriter
    ) async throws {
        let feed = try await tailer.follow(id)
        defer { tailer.leave(feed) }
        inboundClosed?.whenComplete { [tailer] _ in tailer.end(feed) }
        var last = cursor ?? .zero
        // Catch up from the log, then follow the tailer; back to the log whenever signals were dropped.
        func catchUp() async throws -> Bool {
            let page = 512
            while true {
                let events = try await deliveryStore.events(id, after: last, count: page)
                if events.isEmpty { return false }
                let (buffer, finished) = Self.render(events, after: &last, &renderer)
                if buffer.readableBytes > 0 { try await writer.write(buffer) }
                if finished { return true }
                if events.count < page { return false }
            }
        }
        if try await catchUp() { return }
        // Graceful shutdown and the client going away end the feed, which ends the loop (one handler per stream,
        // not a merged sequence per signal: that would add two task switches to every event).
        try await withGracefulShutdownHandler {
            for await signal in feed.signals {
                switch signal {
                case .heartbeat(let latest):
                    if latest > last, try await catchUp() { return }
                    try await writer.write(ByteBuffer(string: ": ping\n\n"))
                case .events(let after, let events):
                    if after > last, try await catchUp() { return }
                    let (buffer, finished) = Self.render(events, after: &last, &renderer)
                    if buffer.readableBytes > 0 {
                        try await writer.write(buffer)
                        Self.recordDelivery(events)
                    }
                    if finished { return }
                }
            }
        } onGracefulShutdown: { [tailer] in
            tailer.end(feed)
        }
    }

    /// The frames of the events after `last`, up to the final one, and whether it was among them.
    static func render<Renderer: StreamRenderer>(
        _ events: [StoredEvent], after last: inout StreamID, _ renderer: inout Renderer
    ) -> (ByteBuffer, Bool) {
        var buffer = ByteBuffer()
        var written = 0
        defer { TetherMetrics.eventsDelivered.increment(by: Int64(written)) }
        for event in events {
            guard let id = event.position, id > last else { continue }
            renderer.append(event, to: &buffer)
            written += 1
            last = id
            if event.isFinal { return (buffer, true) }
        }
        return (buffer, false)
    }

    /// The delivery latency of a batch of live events just written, once per batch (not per event: the histogram
    /// takes a lock): from the append of its oldest event (its timestamp, the appender's clock in milliseconds) to
    /// now.
    static func recordDelivery(_ events: [StoredEvent]) {
        guard let oldest = events.first else { return }
        TetherMetrics.deliveryLatency.recordMilliseconds(max(0, Identifiers.nowMilliseconds() - oldest.timestamp))
    }
}

/// A wire format of the stream: writes stored events, in log order from a cursor, as SSE frames.
protocol StreamRenderer: Sendable {
    /// Appends the frames of one event (none, one or several; the final event's end the stream).
    mutating func append(_ event: StoredEvent, to buffer: inout ByteBuffer)
}

extension ChatChunkRenderer: StreamRenderer {
    func append(_ event: StoredEvent, to buffer: inout ByteBuffer) { appendFrame(event, to: &buffer) }
}

extension UIMessageRenderer: StreamRenderer {}
