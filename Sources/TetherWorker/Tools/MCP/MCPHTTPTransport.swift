import AsyncHTTPClient
import Foundation
import Logging
import MCP
import NIOCore
import NIOHTTP1
import TetherCore

/// The MCP streamable HTTP transport (client side) on async-http-client.
///
/// Not the SDK's `HTTPClientTransport`: on Linux it reads each answer whole through `URLSession.data(for:)`, so an
/// answer streamed as server-sent events reaches its client as one blob it cannot decode, and it opens no stream
/// for the server's own messages (`notifications/tools/list_changed`). This one parses SSE answers incrementally,
/// keeps the session id (`Mcp-Session-Id`) and the negotiated protocol version (`MCP-Protocol-Version`), and once
/// the session exists listens on the GET stream, where the server may send notifications (a 405 means it has none).
/// A 404 on a request that carried a session id means the session is gone, and so does a server that cannot be
/// reached or an answer that breaks off: the stream ends with ``MCPTransportClosed`` and `onClose` tells the
/// supervisor, which makes a new session at the next use.
actor MCPHTTPTransport: Transport {
    nonisolated let logger: Logger
    let url: String
    let headers: [(String, String)]
    let timeout: Duration
    let client: HTTPClient
    private let onClose: @Sendable () -> Void
    private var sessionID: String?
    private var protocolVersion: String?
    private var listener: Task<Void, Never>?
    /// The server refused the GET stream: it has nothing to send on its own.
    private var noStream = false
    private var closed = false
    private let stream: AsyncThrowingStream<Data, any Error>
    private let continuation: AsyncThrowingStream<Data, any Error>.Continuation

    init(
        url: String, headers: [(String, String)], timeout: Duration, client: HTTPClient, logger: Logger,
        onClose: @escaping @Sendable () -> Void
    ) {
        self.url = url
        self.headers = headers
        self.timeout = timeout
        self.client = client
        self.logger = logger
        self.onClose = onClose
        (stream, continuation) = AsyncThrowingStream.makeStream(of: Data.self)
    }

    func connect() async throws {}

    func disconnect() async {
        let wasOpen = !closed
        closed = true
        listener?.cancel()
        listener = nil
        continuation.finish()
        if let sessionID, wasOpen {
            var request = makeRequest(method: .DELETE)
            request.headers.replaceOrAdd(name: "Mcp-Session-Id", value: sessionID)
            _ = try? await client.execute(request, timeout: .seconds(2))
        }
    }

    /// Headers a configuration or a request's `forwardedHeaders` cannot set: the transport's own, and those of
    /// HTTP framing.
    static let reserved: Set<String> = [
        "mcp-session-id", "mcp-protocol-version", "content-type", "content-length", "accept", "host",
        "transfer-encoding", "connection", "te", "upgrade", "keep-alive", "proxy-connection", "last-event-id",
    ]

    nonisolated func receive() -> AsyncThrowingStream<Data, any Error> { stream }

    func send(_ data: Data) async throws {
        guard !closed else { throw MCPTransportClosed() }
        var request = makeRequest(method: .POST)
        request.headers.replaceOrAdd(name: "Content-Type", value: "application/json")
        request.headers.replaceOrAdd(name: "Accept", value: "application/json, text/event-stream")
        request.body = .bytes(ByteBuffer(bytes: data))
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .nanoseconds(HTTPTool.nanoseconds(timeout)))
        } catch {
            // The server is gone (or restarting): this session is over; the next use opens a new one.
            let reason = "the MCP server could not be reached (\(HTTPTool.describe(error)))"
            end(reason)
            throw MCPTransportClosed(reason: reason)
        }
        if let id = response.headers.first(name: "Mcp-Session-Id"), sessionID == nil {
            sessionID = id
        }
        switch response.status.code {
        case 202:
            startListening()
            return
        case 404 where request.headers.contains(name: "Mcp-Session-Id"):
            end("the MCP session expired")
            throw MCPTransportClosed(reason: "the MCP session expired")
        case 200..<300:
            break
        default:
            let body = (try? await response.body.collect(upTo: 64 * 1024)).map { String(buffer: $0) } ?? ""
            throw MCPTransportClosed(reason: "the MCP server answered HTTP \(response.status.code) \(body.prefix(200))")
        }
        let type = response.headers.first(name: "Content-Type") ?? ""
        // A request (a message with an id and a method) must be answered on this response.
        let message = try? JSON.parse(Array(data))
        let awaited: JSON? = message?["method"] != nil ? message?["id"] : nil
        var answered = false
        do {
            if type.contains("text/event-stream") {
                try await read(events: response.body) { message in
                    if let awaited, message["id"] == awaited { answered = true }
                }
            } else {
                let body = try await response.body.collect(upTo: 16 << 20)
                answered = true
                deliver(Data(body.readableBytesView))
            }
        } catch {
            answered = false
        }
        if awaited != nil, !answered {
            // The answer broke off (the server died in the middle of it): the session is over.
            end("the MCP server's answer broke off")
            throw MCPTransportClosed(reason: "the MCP server's answer broke off")
        }
        startListening()
    }

    private func makeRequest(method: HTTPMethod) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers where !Self.reserved.contains(name.lowercased()) {
            request.headers.replaceOrAdd(name: name, value: value)
        }
        if let sessionID { request.headers.replaceOrAdd(name: "Mcp-Session-Id", value: sessionID) }
        if let protocolVersion { request.headers.replaceOrAdd(name: "MCP-Protocol-Version", value: protocolVersion) }
        return request
    }

    /// Hands each SSE event's data to the client as it arrives.
    private func read(
        events body: HTTPClientResponse.Body, seen: (JSON) -> Void = { _ in }
    ) async throws {
        var parser = SSEParser()
        for try await chunk in body {
            for event in parser.feed(chunk.readableBytesView) where !event.data.isEmpty {
                if let message = try? JSON.parse(Array(event.data.utf8)) { seen(message) }
                deliver(Data(event.data.utf8))
            }
        }
    }

    private func deliver(_ message: Data) {
        if protocolVersion == nil, let json = try? JSON.parse(Array(message)),
            let version = json["result"]?["protocolVersion"]?.stringValue
        {
            protocolVersion = version
        }
        continuation.yield(message)
    }

    /// Opens the GET stream for the server's own messages, once there is a session.
    private func startListening() {
        guard listener == nil, sessionID != nil, !closed, !noStream else { return }
        listener = Task { await self.listen() }
    }

    private func listen() async {
        var request = makeRequest(method: .GET)
        request.headers.replaceOrAdd(name: "Accept", value: "text/event-stream")
        do {
            let response = try await client.execute(request, timeout: .hours(24 * 365))
            if response.status.code == 404 {
                end("the MCP session expired")
                return
            }
            // 405 (or another refusal): the server sends nothing on its own in this session.
            guard response.status.code == 200 else {
                noStream = true
                return
            }
            try await read(events: response.body)
        } catch {
            if !Task.isCancelled { logger.debug("MCP notification stream of \(url) ended: \(error)") }
        }
        // Ended (the server closed it): the next request opens it again.
        listener = nil
    }

    private func end(_ reason: String) {
        guard !closed else { return }
        closed = true
        continuation.finish(throwing: MCPTransportClosed(reason: reason))
        onClose()
    }
}
