import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import RedisKit
import TetherCore

/// The four execution endpoints. Each runs behind ``AuthenticationMiddleware``; a key sees only the executions of
/// its own tenant and agent, and anything else is `404`.
extension Gateway {
    func create(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        var request = request
        let principal = try context.requirePrincipal()
        let format = try StreamFormat(request)
        try requireJSON(request)
        let body = try await collectBody(&request)
        let input = try RequestValidation.createExecution(body)
        let idempotencyKey = try RequestValidation.idempotencyKey(request.headers[.idempotencyKey])
        let conversationId = input.conversationId ?? "conv_" + Identifiers.ulid()
        // In the sharded layout an execution lives in its conversation's shard (see Keys).
        var id = store.keys.newExecutionID(tenant: principal.tenant, conversationID: conversationId)
        let idempotency = idempotencyKey.map { key in
            ExecutionStore.Idempotency(
                key: key, requestDigest: ExecutionStore.requestDigest(input.canonical),
                seconds: config.idempotencySeconds)
        }
        var replayed = false
        func create() async throws -> ExecutionStore.Creation {
            try await store.create(
                id: id, tenant: principal.tenant, agentId: principal.agent, keyId: principal.keyId,
                conversationId: conversationId, input: ["messages": input.messages],
                forwardedHeaders: input.forwardedHeaders, idempotency: idempotency)
        }
        var creation = try await create()
        if case .busy(let running) = creation, try await store.record(running).map({ !$0.status.isTerminal }) != true {
            // The execution that held the conversation has ended (or is gone) without freeing it: free it, once.
            try await store.releaseConversation(
                tenant: principal.tenant, conversationID: conversationId, executionID: running)
            creation = try await create()
        }
        var first: StoredEvent?
        switch creation {
        case .created(let event):
            TetherMetrics.executionsCreated.increment()
            first = event
        case .existing(let existing):
            // The same request again: the execution it created, streamed from the start, if this key may see it.
            guard
                try await store.record(existing).map({ $0.tenant == principal.tenant && $0.agentId == principal.agent })
                    == true
            else { throw APIError.executionNotFound }
            id = existing
            replayed = true
        case .reused:
            throw APIError(
                .unprocessableContent, "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body; send a new key for a new request")
        case .foreign:
            throw APIError(
                .unprocessableContent, "idempotency_key_reused", "this Idempotency-Key cannot be used; send a new key")
        case .busy(let running):
            throw APIError(
                .conflict, "conversation_busy",
                "conversation \(conversationId) is busy with execution \(running); wait for it to end or cancel it")
        }
        context.logger.info(
            "\(replayed ? "replayed" : "created") \(id) for tenant \(principal.tenant) agent \(principal.agent)",
            metadata: ["executionId": .string(id)])
        var headers = Self.sseHeaders
        headers[.location] = "/run/api/executions/\(id)"
        headers[.workflowRunID] = id
        if replayed { headers[.idempotentReplayed] = "true" }
        switch format {
        case .inkeep:
            let renderer = ChatChunkRenderer(executionID: id, model: principal.agent)
            return startStream(request, context, id: id, renderer: renderer, first: first, headers: headers)
        case .uiMessage:
            headers[.uiMessageStream] = "v1"
            return startStream(
                request, context, id: id, renderer: UIMessageRenderer(executionID: id), first: first, headers: headers)
        }
    }

    /// The stream of a new execution: the frame of its first event, which the create script returned, is written
    /// at once (the first byte costs one Redis call, not four: the subscription, its cursor and a read come after
    /// it), then the log after it. A replayed execution (`first` is `nil`) streams from the start of its log, and so
    /// does every stream on a cluster: there a client is only sent what a replica holds (see ``deliveryStore``),
    /// and the create script's reply comes from the master.
    private func startStream<Renderer: StreamRenderer>(
        _ request: Request, _ context: GatewayRequestContext, id: String, renderer: Renderer, first: StoredEvent?,
        headers: HTTPFields
    ) -> Response {
        guard !store.redis.isCluster, let first, let position = first.position else {
            return streamResponse(request, context, id: id, renderer: renderer, after: nil, headers: headers)
        }
        var renderer = renderer
        var last = StreamID.zero
        let (preamble, _) = Self.render([first], after: &last, &renderer)
        return streamResponse(
            request, context, id: id, renderer: renderer, after: position, preamble: preamble, headers: headers)
    }

    func status(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let record = try await ownedRecord(context)
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
                        "expiresAt": entry.request["expiresAt"] ?? .null,
                    ]
                })
        }
        if record.status == .failed || record.status == .cancelled, let error = record.error {
            let parsed = (try? JSON.parse(error)) ?? .null
            object["error"] = [
                "code": parsed["code"] ?? .string("error"),
                "message": parsed["message"] ?? .string("the execution ended with an error"),
            ]
        }
        return Self.json(.ok, JSON.object(object).rendered)
    }

    func approve(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        var request = request
        let record = try await ownedRecord(context)
        let toolCallID = try Self.pathParameter("toolCallId", context)
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

    /// Cancels the execution: stored first (it holds even when no worker runs it), then the worker is told to stop.
    /// Cancelling a cancelled execution again is `200`; a completed or failed one is `409`.
    func cancel(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let record = try await ownedRecord(context)
        switch try await store.cancel(record.id) {
        case .cancelled, .alreadyCancelled:
            context.logger.info("cancelled \(record.id)")
            try await store.releaseConversation(
                tenant: record.tenant, conversationID: record.conversationId, executionID: record.id)
            return Self.json(.ok, "{\"success\":true}")
        case .finished:
            throw APIError(.conflict, "execution_finished", "the execution has already finished")
        case .executionNotFound:
            throw APIError.executionNotFound
        }
    }

    func reconnect(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let record = try await ownedRecord(context)
        let format = try StreamFormat(request)
        let asked = try Self.cursor(request, format)
        if format == .uiMessage { return try await reconnectUIMessage(request, context, record, asked) }
        var cursor = asked.after?.id
        var gap: Gap?
        if let skip = asked.startIndex {
            switch try await store.position(record.id, afterFrames: skip) {
            case .start: break
            case .after(let position): cursor = position
            case .trimmed(let resume): gap = Gap(after: .startIndex(skip), resumeFrom: resume)
            }
        }
        if let given = cursor, let last = record.lastEventId.flatMap({ StreamID($0) }), given > last {
            // No client has an event after the newest one: read it as "has everything so far" (waiting for ids
            // after it would hold the stream open on nothing).
            cursor = last
        }
        // The client already has the final frame: tell EventSource to stop reconnecting.
        if record.status.isTerminal, let cursor, let last = record.lastEventId.flatMap({ StreamID($0) }), cursor >= last
        {
            return Response(status: .noContent, headers: [.cacheControl: "no-cache"])
        }
        if let cursor, let history = try await store.history(record.id), history.hasGap(after: cursor) {
            gap = Gap(after: .id(cursor), resumeFrom: history.firstID)
        }
        var headers = Self.sseHeaders
        headers[.workflowRunID] = record.id
        let renderer = ChatChunkRenderer(executionID: record.id, model: record.agentId)
        var preamble: ByteBuffer?
        if let gap {
            var buffer = ByteBuffer()
            renderer.appendGapFrame(gap, to: &buffer)
            preamble = buffer
        }
        return streamResponse(
            request, context, id: record.id, renderer: renderer, after: cursor, preamble: preamble, headers: headers)
    }

    /// A stream token for the execution and the calling key, for a browser's `EventSource` (`?token=` on its
    /// stream; see ``StreamTokens``).
    func streamToken(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let record = try await ownedRecord(context)
        let principal = try context.requirePrincipal()
        let expiresAt = Identifiers.nowMilliseconds() + StreamTokens.lifetimeMilliseconds
        let token = StreamTokens.make(
            executionID: record.id, keyID: principal.keyId, expiresAt: expiresAt,
            key: try await authenticator.streamTokenKey())
        let body: JSON = [
            "token": .string(token), "expiresAt": .string(Identifiers.isoTimestamp(milliseconds: expiresAt)),
        ]
        return Response(
            status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: body.rendered)))
    }

    // MARK: - Helpers

    /// The execution of the path, when the principal may see it; `404` otherwise (never `403`: no existence leak).
    func ownedRecord(_ context: GatewayRequestContext) async throws -> ExecutionRecord {
        let principal = try context.requirePrincipal()
        let id = try Self.pathParameter("executionId", context)
        guard id.hasPrefix("exec_"), id.utf8.count <= 64,
            let record = try await store.record(id), record.tenant == principal.tenant,
            record.agentId == principal.agent
        else { throw APIError.executionNotFound }
        return record
    }

    /// A path parameter, percent-decoded (`call%5F1` is `call_1`).
    static func pathParameter(_ name: String, _ context: GatewayRequestContext) throws -> String {
        let raw = try context.parameters.require(name)
        return raw.removingPercentEncoding ?? raw
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
        let tooLarge = APIError(
            .contentTooLarge, "payload_too_large", "request body exceeds \(config.http.bodyLimitBytes) bytes")
        do {
            let buffer = try await request.collectBody(upTo: config.http.bodyLimitBytes)
            return Array(buffer.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw tooLarge
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge
        }
    }
}
