import Foundation
import NIOHTTP1
import TestSupport
import Testing
import TetherClient
import TetherCore

/// Stream tokens for browsers' EventSource: made by the gateway for one execution and one key, accepted as `?token=`
/// on that execution's stream only.
@Suite("Stream tokens", .timeLimit(.minutes(1)))
struct StreamTokenTests {
    @Test func aTokenNamesOneExecutionAndKeyAndExpires() {
        let key = StreamTokens.signingKey(idSecret: Array(repeating: 7, count: 32))
        let token = StreamTokens.make(executionID: "exec_A", keyID: "key1", expiresAt: 2_000, key: key)
        #expect(StreamTokens.check(token, executionID: "exec_A", key: key, now: 1_999) == .success("key1"))
        #expect(StreamTokens.check(token, executionID: "exec_A", key: key, now: 2_000) == .failure(.expired))
        #expect(StreamTokens.check(token, executionID: "exec_B", key: key, now: 1_000) == .failure(.otherExecution))
        let otherKey = StreamTokens.signingKey(idSecret: Array(repeating: 8, count: 32))
        #expect(StreamTokens.check(token, executionID: "exec_A", key: otherKey, now: 1_000) == .failure(.badSignature))
        // Changing any part breaks the signature: a later expiry, another key id, another execution.
        for forged in [
            token.replacingOccurrences(of: ".2000.", with: ".9000."),
            token.replacingOccurrences(of: ".key1.", with: ".key2."),
            token.replacingOccurrences(of: "exec_A", with: "exec_B"),
        ] {
            #expect(StreamTokens.check(forged, executionID: "exec_B", key: key, now: 1_000) == .failure(.badSignature))
        }
        // Signed, but valid for longer than any token is made for: refused.
        let forever = StreamTokens.make(executionID: "exec_A", keyID: "key1", expiresAt: Int64.max - 1, key: key)
        #expect(StreamTokens.check(forever, executionID: "exec_A", key: key, now: 1_000) == .failure(.expired))
        for malformed in [
            "", "st1", "st2.exec_A.key1.2000.\(String(repeating: "0", count: 64))", token + ".x",
            "st1.exec_A.key1.soon.00",
        ] {
            #expect(StreamTokens.check(malformed, executionID: "exec_A", key: key, now: 1_000) == .failure(.malformed))
        }
    }

    @Test func aBrowserReadsTheStreamWithATokenAndNothingElse() async throws {
        let harness = try await Harness.start { $0.http.keyCacheSeconds = 0.2 }
        defer { harness.stop() }
        let first = try await harness.create("send an email to pat@example.com")
        _ = try await readFrames(first) { $0.contains { $0.type == "tool-approval-request" } }
        first.close()
        let id = first.executionID

        // A page on another origin asks (CORS: the preflight allows it, the answer names the origin).
        let preflight = try await harness.http.send(
            .OPTIONS, "/run/api/executions/\(id)/stream-token",
            headers: [
                ("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "authorization"),
            ])
        #expect(preflight.headers["access-control-allow-origin"] != nil)
        #expect(preflight.headers["access-control-allow-headers"]?.lowercased().contains("authorization") == true)
        let issued = try await harness.http.send(
            .POST, "/run/api/executions/\(id)/stream-token",
            headers: harness.auth() + [("Origin", "https://app.example")])
        #expect(issued.status == 200)
        #expect(issued.headers["access-control-allow-origin"] != nil)
        #expect(issued.headers["cache-control"] == "no-store")
        let body = try JSON.parse(issued.body)
        let token = try #require(body["token"]?.stringValue)
        let expiresAt = try #require(body["expiresAt"]?.stringValue.flatMap(Identifiers.milliseconds(isoTimestamp:)))
        #expect(abs(expiresAt - Identifiers.nowMilliseconds() - StreamTokens.lifetimeMilliseconds) < 5_000)

        // With the token and no Authorization: the same frames as with the key.
        let withToken = try await harness.http.open(
            .GET, "/run/api/executions/\(id)/stream?token=\(token)", headers: [("Origin", "https://app.example")])
        #expect(withToken.status == 200)
        #expect(withToken.headers["access-control-allow-origin"] != nil)
        let viaToken = try await readFrames(withToken) { $0.contains { $0.type == "tool-approval-request" } }
        withToken.close()
        let withKey = try await harness.reconnect(id)
        let viaKey = try await readFrames(withKey) { $0.contains { $0.type == "tool-approval-request" } }
        withKey.close()
        #expect(viaToken.map(\.event.raw) == viaKey.map(\.event.raw))

        /// The 401's error text (an accepted stream stays open: only its status is read).
        @Sendable func refused(_ path: String, _ method: HTTPMethod = .GET) async throws -> String? {
            let answer = try await harness.http.open(method, path)
            defer { answer.close() }
            guard answer.status == 401 else { return "answered \(answer.status)" }
            var body: [UInt8] = []
            for try await chunk in answer.body { body += chunk.readableBytesView }
            return try JSON.parse(body)["error"]?.stringValue
        }
        // A token for another execution, a forged one, one on another endpoint, an expired one.
        let other = try await harness.create("what time is it?")
        _ = try await readFrames(other) { _ in false }
        #expect(
            try await refused("/run/api/executions/\(other.executionID)/stream?token=\(token)")
                == "stream token is for another execution")
        let forged = String(token.dropLast()) + (token.hasSuffix("0") ? "1" : "0")
        #expect(
            try await refused("/run/api/executions/\(id)/stream?token=\(forged)")
                == "stream token signature does not match")
        #expect(
            try await refused("/run/api/executions/\(id)?token=\(token)")?.hasPrefix("missing Authorization") == true)
        #expect(
            try await refused("/run/api/executions/\(id)/cancel?token=\(token)", .POST)?.hasPrefix(
                "missing Authorization") == true)
        let principal = try await harness.gateway.authenticator.principal(authorization: "Bearer \(harness.token)")
        let expired = StreamTokens.make(
            executionID: id, keyID: principal.keyId, expiresAt: Identifiers.nowMilliseconds() - 1,
            key: try await harness.gateway.authenticator.streamTokenKey())
        #expect(
            try await refused("/run/api/executions/\(id)/stream?token=\(expired)")
                == "stream token expired; ask for a new one")
        #expect(try await refused("/run/api/executions/\(id)/stream?token=") == "malformed stream token")

        // Another tenant's key gets no token for it; a revoked key's tokens stop working.
        let stranger = try await harness.makeKey(tenant: "other", agent: "demo")
        #expect(
            try await harness.http.send(
                .POST, "/run/api/executions/\(id)/stream-token", headers: harness.auth(stranger)
            ).status == 404)
        let keys = APIKeys(redis: harness.redis, keys: harness.store.keys, configured: [])
        #expect(try await keys.revoke(id: principal.keyId))
        #expect(
            try await eventually(5) {
                try await refused("/run/api/executions/\(id)/stream?token=\(token)") == "unknown or revoked API key"
            })
    }
}
