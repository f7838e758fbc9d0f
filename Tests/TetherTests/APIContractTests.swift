import Foundation
import TestSupport
import Testing
import TetherClient
import TetherCore
import TetherGateway

@Suite("API contract: auth, validation, tenancy, CORS", .timeLimit(.minutes(2)))
struct APIContractTests {
    func post(_ harness: Harness, body: String, contentType: String? = "application/json", token: String? = nil)
        async throws -> HTTPResult
    {
        var headers = harness.auth(token)
        if let contentType { headers.append(("Content-Type", contentType)) }
        return try await harness.http.send(.POST, "/run/api/executions", headers: headers, body: Array(body.utf8))
    }

    @Test func authenticationFailuresAre401WithBearerChallenge() async throws {
        let harness = try await Harness.start(withWorker: false) { $0.http.keyCacheSeconds = 0.2 }
        defer { harness.stop() }
        let body = Array("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}".utf8)
        let cases: [[(String, String)]] = [
            [],
            [("Authorization", "Basic dXNlcjpwYXNz")],
            [("Authorization", "Bearer not-a-key")],
            [("Authorization", "Bearer tk_unknownid_secretsecret")],
            // The right key with its last character changed.
            [("Authorization", "Bearer " + harness.token.dropLast() + (harness.token.hasSuffix("x") ? "y" : "x"))],
        ]
        for headers in cases {
            let response = try await harness.http.send(
                .POST, "/run/api/executions", headers: headers + [("Content-Type", "application/json")], body: body)
            #expect(response.status == 401, "\(headers)")
            #expect(response.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
            #expect(try JSON.parse(response.body)["code"]?.stringValue == "unauthorized")
        }
        // A revoked key stops working within the cache time.
        let token = try await harness.makeKey(tenant: "acme", agent: "demo")
        #expect(try await harness.status("exec_missing", token: token).status == 404)
        let id = try #require(APIKeys.parse(token)?.id)
        #expect(try await APIKeys(redis: harness.redis, keys: harness.store.keys, configured: []).revoke(id: id))
        #expect(try await eventually(3) { try await harness.status("exec_missing", token: token).status == 401 })
    }

    @Test func configuredKeysWork() async throws {
        let secret = "s3cretvalue"
        let harness = try await Harness.start(withWorker: false) {
            $0.apiKeys = [.init(id: "static1", tenant: "acme", agent: "demo", secretSha256: APIKeys.digest(secret))]
        }
        defer { harness.stop() }
        #expect(try await harness.status("exec_x", token: "tk_static1_\(secret)").status == 404)
        #expect(try await harness.status("exec_x", token: "tk_static1_wrong").status == 401)
    }

    @Test(arguments: [
        ("not json", "invalid_json"),
        ("[1,2]", "invalid_request"),
        ("{}", "invalid_messages"),
        ("{\"messages\":[]}", "invalid_messages"),
        ("{\"messages\":\"hi\"}", "invalid_messages"),
        ("{\"messages\":[{\"role\":\"robot\",\"content\":\"hi\"}]}", "invalid_messages"),
        ("{\"messages\":[{\"role\":\"user\"}]}", "invalid_messages"),
        ("{\"messages\":[{\"role\":\"user\",\"content\":42}]}", "invalid_messages"),
        ("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", "invalid_messages"),
        (
            "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}",
            "invalid_messages"
        ),
        ("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"conversationId\":\"\"}", "invalid_conversation_id"),
        (
            "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"conversationId\":\"has space\"}",
            "invalid_conversation_id"
        ),
        ("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"conversationId\":7}", "invalid_conversation_id"),
        (
            "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"forwardedHeaders\":[]}",
            "invalid_forwarded_headers"
        ),
        (
            "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"forwardedHeaders\":{\"x\":1}}",
            "invalid_forwarded_headers"
        ),
    ])
    func invalidBodiesAre400(_ body: String, _ code: String) async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let response = try await post(harness, body: body)
        #expect(response.status == 400)
        let error = try JSON.parse(response.body)
        #expect(error["code"]?.stringValue == code)
        #expect(error["error"]?.stringValue?.isEmpty == false)
        // Nothing was created.
        #expect(try await harness.total("EXISTS", of: harness.store.keys.jobs(shard:)) == 0)
    }

    @Test func validBodiesIncludingPartsAndHeaders() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let body = """
            {"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},\
            {"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}],\
            "conversationId":"conv.A_1:b-2","forwardedHeaders":{"x-user-id":"u1"}}
            """
        let stream = try await harness.http.open(
            .POST, "/run/api/executions",
            headers: harness.auth() + [("Content-Type", "application/json; charset=utf-8")],
            body: Array(body.utf8))
        #expect(stream.status == 200)
        let frames = try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        let status = try JSON.parse(try await harness.status(stream.executionID).body)
        #expect(status["conversationId"]?.stringValue == "conv.A_1:b-2")
    }

    @Test func contentTypeAndSize() async throws {
        let harness = try await Harness.start(withWorker: false) { $0.http.bodyLimitBytes = 1024 }
        defer { harness.stop() }
        let body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
        let wrongType = try await post(harness, body: body, contentType: "text/plain")
        #expect(wrongType.status == 415)
        #expect(try JSON.parse(wrongType.body)["code"]?.stringValue == "unsupported_media_type")
        #expect(try await post(harness, body: body, contentType: nil).status == 415)
        let big = "{\"messages\":[{\"role\":\"user\",\"content\":\"\(String(repeating: "a", count: 2000))\"}]}"
        let tooLarge = try await post(harness, body: big)
        #expect(tooLarge.status == 413)
        #expect(try JSON.parse(tooLarge.body)["code"]?.stringValue == "payload_too_large")
    }

    @Test func anotherTenantOrAgentSeesNothing() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await harness.create("email gina@example.com")
        let id = stream.executionID
        let frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let toolCallID = try #require(frames.last?.typed?["toolCallId"]?.stringValue)
        let otherTenant = try await harness.makeKey(tenant: "globex", agent: "demo")
        let otherAgent = try await harness.makeKey(tenant: "acme", agent: "billing")
        for token in [otherTenant, otherAgent] {
            let status = try await harness.status(id, token: token)
            #expect(status.status == 404)
            #expect(try JSON.parse(status.body)["code"]?.stringValue == "execution_not_found")
            #expect(try await harness.decide(id, toolCallID, approved: true, token: token).status == 404)
            let reconnect = try await harness.http.send(
                .GET, "/run/api/executions/\(id)/stream", headers: harness.auth(token))
            #expect(reconnect.status == 404)
        }
        // The owner still can, and nothing was decided by the others.
        #expect(try JSON.parse(try await harness.status(id).body)["status"]?.stringValue == "suspended")
        #expect(try await harness.status("exec_doesnotexist").status == 404)
        stream.close()
    }

    @Test func corsPreflightAndExposedHeaders() async throws {
        let harness = try await Harness.start(withWorker: false) {
            $0.http.corsAllowedOrigins = ["https://app.example"]
        }
        defer { harness.stop() }
        let preflight = try await harness.http.send(
            .OPTIONS, "/run/api/executions",
            headers: [
                ("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "authorization, content-type, last-event-id"),
            ])
        #expect(preflight.status == 204)
        #expect(preflight.headers["access-control-allow-origin"] == "https://app.example")
        let allowed = preflight.headers["access-control-allow-headers"]?.lowercased() ?? ""
        for header in ["authorization", "content-type", "last-event-id", "idempotency-key"] {
            #expect(allowed.contains(header))
        }
        let refused = try await harness.http.send(
            .OPTIONS, "/run/api/executions",
            headers: [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")])
        #expect(refused.headers["access-control-allow-origin"] == nil)
        let get = try await harness.http.send(
            .GET, "/run/api/executions/exec_x", headers: harness.auth() + [("Origin", "https://app.example")])
        #expect(get.headers["access-control-expose-headers"]?.contains("x-workflow-run-id") == true)
        #expect(get.headers["access-control-expose-headers"]?.contains("Location") == true)
    }

    @Test func healthReadinessOpenAPIAndUnknownRoutes() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        #expect(try await harness.http.send(.GET, "/healthz").status == 200)
        #expect(try await harness.http.send(.GET, "/readyz").status == 200)
        let spec = try await harness.http.send(.GET, "/run/api/openapi.json")
        #expect(spec.status == 200)
        let document = try JSON.parse(spec.body)
        #expect(document["openapi"]?.stringValue?.hasPrefix("3.") == true)
        let unknown = try await harness.http.send(.GET, "/nope")
        #expect(unknown.status == 404)
        #expect(try JSON.parse(unknown.body)["code"]?.stringValue == "route_not_found")
    }
}

@Suite("OpenAPI document", .timeLimit(.minutes(2)))
struct OpenAPIDocumentTests {
    @Test func theServedDocumentIsThePackageResourceAsItIs() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let response = try await harness.http.send(.GET, "/run/api/openapi.json")
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../Sources/TetherGateway/Resources/openapi.json")
        #expect(response.body == Array(try Data(contentsOf: path)))
        #expect(response.headers["content-type"] == "application/json")
        let served = try JSON.parse(response.body)
        // Every route the gateway serves is documented.
        let paths = try #require(served["paths"]?.objectValue)
        for path in [
            "/run/api/executions", "/run/api/executions/{executionId}",
            "/run/api/executions/{executionId}/approvals/{toolCallId}", "/run/api/executions/{executionId}/stream",
        ] {
            #expect(paths[path] != nil)
        }
        // Every "$ref" points at something the document defines.
        func references(_ value: JSON) -> [String] {
            switch value {
            case .object(let members):
                return (members["$ref"]?.stringValue.map { [$0] } ?? []) + members.values.flatMap(references)
            case .array(let elements): return elements.flatMap(references)
            default: return []
            }
        }
        let refs = references(served)
        #expect(refs.count > 10)
        for ref in Set(refs) {
            var node: JSON? = served
            for part in ref.dropFirst(2).split(separator: "/") { node = node?[String(part)] }
            #expect(node != nil, "\(ref) is defined")
        }
    }
}

@Suite("Redis outage", .timeLimit(.minutes(2)))
struct OutageTests {
    @Test func requestsFailFastWith503WhileRedisIsAway() async throws {
        var config = TetherConfig()
        config.redis.url = "redis://127.0.0.1:\(try freePort())"  // nothing listens there
        config.http.port = 0
        config.apiKeys = [.init(id: "static", tenant: "acme", agent: "demo", secretSha256: APIKeys.digest("s"))]
        let redis = try Harness.client(config, name: "outage")
        defer { redis.shutdown() }
        let gateway = Gateway(config: config, redis: redis, logger: Harness.quietLogger("tether.gateway"))
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = gateway.makeApplication { channel in continuation.yield(channel.localAddress?.port ?? 0) }
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        defer { task.cancel() }
        var iterator = ports.makeAsyncIterator()
        let client = HTTPClient(port: await iterator.next() ?? 0)
        #expect(try await client.send(.GET, "/healthz").status == 200)
        let ready = try await client.send(.GET, "/readyz")
        #expect(ready.status == 503)
        let start = ContinuousClock.now
        let created = try await client.send(
            .POST, "/run/api/executions",
            headers: [("Authorization", "Bearer tk_static_s"), ("Content-Type", "application/json")],
            body: Array(#"{"messages":[{"role":"user","content":"hi"}]}"#.utf8))
        #expect(created.status == 503)
        #expect(try JSON.parse(created.body)["code"]?.stringValue == "unavailable")
        #expect(ContinuousClock.now - start < .seconds(3))
    }
}
