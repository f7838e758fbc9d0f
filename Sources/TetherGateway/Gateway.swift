import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RedisKit
import ServiceLifecycle
import Synchronization
import TetherCore

/// The HTTP gateway: the four execution endpoints, health checks and the OpenAPI document.
///
/// Stateless: any number of gateways can serve the same Redis. Live tailing goes through one ``Tailer`` per
/// gateway, so Redis connections are bounded by the pool size plus one pub/sub connection, whatever the number
/// of clients.
public final class Gateway: Sendable {
    /// The configuration.
    public let config: TetherConfig
    /// The execution store.
    public let store: ExecutionStore
    /// The API keys.
    public let apiKeys: APIKeys
    /// Live tailing.
    public let tailer: Tailer
    let logger: Logger
    private let keyCache = Mutex<[String: (info: APIKeyInfo?, expires: ContinuousClock.Instant)]>([:])

    /// Makes a gateway on `redis`.
    public init(config: TetherConfig, redis: RedisClient, logger: Logger = Logger(label: "tether.gateway")) {
        self.config = config
        self.store = ExecutionStore(redis: redis, config: config)
        self.apiKeys = APIKeys(redis: redis, keys: store.keys, configured: config.apiKeys)
        self.tailer = Tailer(store: store, clientQueue: config.http.clientQueueLength, logger: logger)
        self.logger = logger
    }

    /// The router with every route and middleware.
    public func makeRouter() -> Router<GatewayRequestContext> {
        let router = Router(context: GatewayRequestContext.self)
        // CORS outermost, so that error responses carry its headers too.
        router.add(middleware: CORSMiddleware(allowedOrigins: config.http.corsAllowedOrigins))
        router.add(middleware: ErrorMiddleware())
        router.get("healthz") { _, _ in Self.json(.ok, "{\"status\":\"ok\"}") }
        router.get("readyz") { _, _ in
            do {
                try await self.store.redis.send("PING")
                return Self.json(.ok, "{\"status\":\"ready\",\"redis\":\"ok\"}")
            } catch {
                return APIError(.serviceUnavailable, "unavailable", "Redis is not reachable: \(error)").response
            }
        }
        router.get("run/api/openapi.json") { _, _ in Self.json(.ok, OpenAPIDocument.json) }
        router.post("run/api/executions") { request, context in try await self.create(request, context) }
        router.get("run/api/executions/:executionId") { request, context in try await self.status(request, context) }
        router.post("run/api/executions/:executionId/approvals/:toolCallId") { request, context in
            try await self.approve(request, context)
        }
        router.get("run/api/executions/:executionId/stream") { request, context in
            try await self.reconnect(request, context)
        }
        return router
    }

    /// A service that ticks the tailer every heartbeat interval (heartbeat comments and the re-read safety net).
    public var heartbeatService: some Service {
        HeartbeatService(tailer: tailer, interval: .milliseconds(Int64(config.http.heartbeatSeconds * 1000)))
    }

    // MARK: - Endpoints

    private func create(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        var request = request
        let principal = try await authenticate(request)
        try requireJSON(request)
        let body = try await collectBody(&request)
        let input = try RequestValidation.createExecution(body)
        let idempotencyKey = try RequestValidation.idempotencyKey(request.headers[HTTPField.Name("Idempotency-Key")!])
        var id = Identifiers.executionID()
        let conversationId = input.conversationId ?? "conv_" + Identifiers.ulid()
        var stored: [String: JSON] = ["messages": input.messages]
        if !input.forwardedHeaders.isEmpty {
            stored["forwardedHeaders"] = .object(input.forwardedHeaders.mapValues { .string($0) })
        }
        var replayed = false
        switch try await store.create(
            id: id, tenant: principal.tenant, agentId: principal.agent, keyId: principal.keyId,
            conversationId: conversationId, input: .object(stored), idempotencyKey: idempotencyKey)
        {
        case .created: break
        case .existing(let existing):
            // The same request again: the execution it created, streamed from the start.
            id = existing
            replayed = true
        }
        context.logger.info(
            "\(replayed ? "replayed" : "created") \(id) for tenant \(principal.tenant) agent \(principal.agent)")
        var headers = Self.sseHeaders
        headers[.location] = "/run/api/executions/\(id)"
        headers[HTTPField.Name("x-workflow-run-id")!] = id
        if replayed { headers[HTTPField.Name("Idempotent-Replayed")!] = "true" }
        let renderer = ChatChunkRenderer(executionID: id, model: principal.agent)
        return streamResponse(
            request, id: id, renderer: renderer, after: nil, gap: nil, headers: headers, on: context.eventLoop)
    }

    private func status(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let principal = try await authenticate(request)
        let record = try await ownedRecord(context, principal)
        var object: [String: JSON] = [
            "id": .string(record.id), "agentId": .string(record.agentId),
            "conversationId": .string(record.conversationId), "status": .string(record.status.rawValue),
            "createdAt": .string(record.createdAt), "updatedAt": .string(record.updatedAt),
        ]
        object["lastEventId"] = record.lastEventId.map { .string($0) } ?? .null
        if record.status == .suspended {
            let pending = try await store.approvals(record.id).filter { $0.decision == nil }
            object["pendingApprovals"] = .array(
                pending.map { entry in
                    [
                        "toolCallId": .string(entry.toolCallId), "toolName": entry.request["toolName"] ?? .null,
                        "input": entry.request["input"] ?? .null, "requestedAt": entry.request["requestedAt"] ?? .null,
                    ]
                })
        }
        if record.status == .failed || record.status == .cancelled, let error = record.error {
            let parsed = (try? JSON.parse(error)) ?? .string(error)
            object["error"] = [
                "code": parsed["code"] ?? .string("error"), "message": parsed["message"] ?? .string(error),
            ]
        }
        return Self.json(.ok, JSON.object(object).rendered)
    }

    private func approve(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        var request = request
        let principal = try await authenticate(request)
        let record = try await ownedRecord(context, principal)
        let toolCallID = try context.parameters.require("toolCallId")
        try requireJSON(request)
        let body = try await collectBody(&request)
        let decision = try RequestValidation.decision(body)
        switch try await store.decide(
            record.id, toolCallID: toolCallID, approved: decision.approved, reason: decision.reason)
        {
        case .recorded, .repeated:
            return Self.json(.ok, "{\"success\":true}")
        case .executionNotFound:
            throw APIError.executionNotFound
        case .toolCallNotFound:
            throw APIError(
                .notFound, "tool_call_not_found", "no approval is pending or recorded for tool call \(toolCallID)")
        case .conflict:
            throw APIError(
                .conflict, "decision_conflict", "a different decision was already recorded for \(toolCallID)")
        case .finished:
            throw APIError(.conflict, "execution_finished", "the execution has already finished")
        }
    }

    private func reconnect(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let principal = try await authenticate(request)
        let record = try await ownedRecord(context, principal)
        var cursor = try parseCursor(request)
        if cursor == nil, let skipText = request.headers[HTTPField.Name("x-stream-start-index")!] {
            guard let skip = Int(skipText), skip >= 0 else {
                throw APIError.badRequest(
                    "invalid_stream_start_index", "x-stream-start-index must be a non-negative integer")
            }
            if skip > 0 {
                let reply = try await store.redis.send("XRANGE", store.keys.events(record.id), "-", "+", "COUNT", skip)
                cursor = ExecutionStore.parseEntries(reply).last?.position
            }
        }
        // The client already has the final frame: tell EventSource to stop reconnecting.
        if record.status.isTerminal, let cursor, let last = record.lastEventId.flatMap({ StreamID($0) }), cursor >= last
        {
            return Response(status: .noContent, headers: [.cacheControl: "no-cache"])
        }
        var gap: (after: StreamID, resume: StreamID?)?
        if let cursor, let history = try await store.history(record.id), history.hasGap(after: cursor) {
            gap = (cursor, history.firstID)
        }
        var headers = Self.sseHeaders
        headers[HTTPField.Name("x-workflow-run-id")!] = record.id
        let renderer = ChatChunkRenderer(executionID: record.id, model: record.agentId)
        return streamResponse(
            request, id: record.id, renderer: renderer, after: cursor, gap: gap, headers: headers,
            on: context.eventLoop)
    }

    // MARK: - Streaming

    static let sseHeaders: HTTPFields = [
        .contentType: "text/event-stream", .cacheControl: "no-cache", HTTPField.Name("X-Accel-Buffering")!: "no",
    ]

    private func streamResponse(
        _ request: Request, id: String, renderer: ChatChunkRenderer, after cursor: StreamID?,
        gap: (after: StreamID, resume: StreamID?)?, headers: HTTPFields, on loop: any EventLoop
    ) -> Response {
        Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                do {
                    try await request.body.consumeWithCancellationOnInboundClose { _ in
                        // The pump runs on the connection's event loop: its writes need no hop, and the streams'
                        // work is spread over the loops the way their connections are.
                        try await withTaskExecutorPreference(EventLoopTaskExecutor(loop)) {
                            try await self.pump(id, renderer: renderer, after: cursor, gap: gap, writer: &writer)
                        }
                    }
                } catch is CancellationError {
                    // The client went away, or the server is shutting down.
                } catch {
                    // Headers are sent: end the response; the client reconnects with its Last-Event-ID.
                    self.logger.warning("stream of \(id) ended early: \(error)")
                }
                try? await writer.finish(nil)
            })
    }

    /// Writes the log from `cursor` to the final frame: catch-up from the stream, then live entries from the tailer.
    private func pump(
        _ id: String, renderer: ChatChunkRenderer, after cursor: StreamID?,
        gap: (after: StreamID, resume: StreamID?)?, writer: inout any ResponseBodyWriter
    ) async throws {
        let feed = try await tailer.follow(id)
        defer { tailer.leave(feed) }
        var last = cursor ?? .zero
        if let gap {
            var buffer = ByteBuffer()
            renderer.appendGapFrame(after: gap.after.description, resumeFrom: gap.resume?.description, to: &buffer)
            try await writer.write(buffer)
        }
        // Catch up from the log, then follow the tailer; back to the log whenever signals were dropped.
        func catchUp() async throws -> Bool {
            let page = 512
            while true {
                let events = try await store.events(id, after: last, count: page)
                if events.isEmpty { return false }
                let (buffer, finished) = render(events, after: &last, renderer)
                if buffer.readableBytes > 0 { try await writer.write(buffer) }
                if finished { return true }
                if events.count < page { return false }
            }
        }
        if try await catchUp() { return }
        // Graceful shutdown ends the feed, which ends the loop (one handler per stream, not a merged sequence
        // per signal: that would add two task switches to every event).
        try await withGracefulShutdownHandler {
            for await signal in feed.signals {
                switch signal {
                case .heartbeat(let latest):
                    if latest > last, try await catchUp() { return }
                    try await writer.write(ByteBuffer(string: ": ping\n\n"))
                case .events(let after, let events):
                    if after > last, try await catchUp() { return }
                    let (buffer, finished) = render(events, after: &last, renderer)
                    if buffer.readableBytes > 0 { try await writer.write(buffer) }
                    if finished { return }
                }
            }
        } onGracefulShutdown: { [tailer] in
            tailer.end(feed)
        }
    }

    private func render(_ events: [StoredEvent], after last: inout StreamID, _ renderer: ChatChunkRenderer)
        -> (ByteBuffer, Bool)
    {
        var buffer = ByteBuffer()
        for event in events {
            guard let id = event.position, id > last else { continue }
            renderer.appendFrame(event, to: &buffer)
            last = id
            if event.isFinal { return (buffer, true) }
        }
        return (buffer, false)
    }

    // MARK: - Helpers

    /// Resolves the bearer token to a principal (401 when missing, malformed, unknown or revoked).
    func authenticate(_ request: Request) async throws -> Principal {
        guard let header = request.headers[.authorization] else {
            throw APIError.unauthorized("missing Authorization header; send Authorization: Bearer <api key>")
        }
        guard header.count > 7, header.prefix(7).lowercased() == "bearer " else {
            throw APIError.unauthorized("Authorization must be Bearer <api key>")
        }
        let token = header.dropFirst(7).trimmingCharacters(in: .whitespaces)
        guard let (keyID, secret) = APIKeys.parse(String(token)) else {
            throw APIError.unauthorized("malformed API key; expected tk_<id>_<secret>")
        }
        let now = ContinuousClock.now
        let cached = keyCache.withLock { cache -> (info: APIKeyInfo?, expires: ContinuousClock.Instant)? in
            guard let entry = cache[keyID], entry.expires > now else { return nil }
            return entry
        }
        let info: APIKeyInfo?
        if let cached {
            info = cached.info
        } else {
            info = try await apiKeys.lookup(id: keyID)
            let expires = now + .milliseconds(Int64(config.http.keyCacheSeconds * 1000))
            keyCache.withLock { cache in
                if cache.count > 10_000 { cache.removeAll() }
                cache[keyID] = (info, expires)
            }
        }
        guard let info, let principal = APIKeys.verify(secret: secret, against: info) else {
            throw APIError.unauthorized("unknown or revoked API key")
        }
        return principal
    }

    private func ownedRecord(_ context: GatewayRequestContext, _ principal: Principal) async throws -> ExecutionRecord {
        let id = try context.parameters.require("executionId")
        guard id.hasPrefix("exec_"), id.utf8.count <= 64,
            let record = try await store.record(id), record.tenant == principal.tenant,
            record.agentId == principal.agent
        else { throw APIError.executionNotFound }
        return record
    }

    private func parseCursor(_ request: Request) throws -> StreamID? {
        let raw = request.headers[HTTPField.Name("Last-Event-ID")!] ?? request.uri.queryParameters.get("lastEventId")
        guard let raw, !raw.isEmpty else { return nil }
        guard let id = StreamID(raw) else {
            throw APIError.badRequest("invalid_last_event_id", "Last-Event-ID must be a stream id like 1764425001234-0")
        }
        return id
    }

    private func requireJSON(_ request: Request) throws {
        let type = request.headers[.contentType]?.lowercased() ?? ""
        let base = type.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard base == "application/json" || (base.hasPrefix("application/") && base.hasSuffix("+json")) else {
            throw APIError(
                .unsupportedMediaType, "unsupported_media_type",
                "Content-Type must be application/json, got \(type.isEmpty ? "none" : type)")
        }
    }

    private func collectBody(_ request: inout Request) async throws -> [UInt8] {
        do {
            let buffer = try await request.collectBody(upTo: config.http.bodyLimitBytes)
            return Array(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw APIError(
                .contentTooLarge, "payload_too_large", "request body exceeds \(config.http.bodyLimitBytes) bytes")
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError(
                .contentTooLarge, "payload_too_large", "request body exceeds \(config.http.bodyLimitBytes) bytes")
        }
    }

    static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// Ticks the tailer until shutdown: one slice of the watched executions every tenth of the heartbeat interval, so
/// that each gets its heartbeat every interval and the work is spread over it.
struct HeartbeatService: Service {
    let tailer: Tailer
    let interval: TimeAmount
    static let slices = 10

    func run() async throws {
        let duration = Duration.nanoseconds(interval.nanoseconds / Int64(Self.slices))
        // Graceful shutdown cancels the sleep: the service returns at once rather than after a tick.
        try? await cancelWhenGracefulShutdown {
            var slice = 0
            while !Task.isCancelled {
                try await Task.sleep(for: duration)
                tailer.tick(slice: slice, of: Self.slices)
                slice = (slice + 1) % Self.slices
            }
        }
    }
}

extension Gateway {
    /// The Hummingbird application serving this gateway on the configured host and port, running `services`
    /// (workers, say) beside it; graceful shutdown ends open streams cleanly.
    public func makeApplication(
        services: [any Service] = [], onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        Application(
            router: makeRouter(),
            configuration: ApplicationConfiguration(
                address: .hostname(config.http.host, port: config.http.port), serverName: "tether",
                backlog: config.http.backlog),
            services: [heartbeatService] + services,
            onServerRunning: onServerRunning,
            logger: logger)
    }
}
