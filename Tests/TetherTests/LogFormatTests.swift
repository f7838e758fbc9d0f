import Foundation
import Logging
import TestSupport
import Testing
import TetherClient

@testable import TetherCore

#if canImport(Glibc)
    import Glibc
#endif

/// `LOG_FORMAT=json`: one JSON object per line, with the execution, tenant and agent wherever one applies.
@Suite("JSON logs", .serialized, .timeLimit(.minutes(1)))
struct LogFormatTests {
    @Test func aLineHoldsTheMessageAndEveryMetadataEntry() throws {
        let line = JSONLogHandler.line(
            level: .warning, label: "tether.worker", message: "tool failed",
            metadata: ["executionId": "exec_A", "tenant": "acme", "attempt": "1"],
            ["attempt": "2", "calls": ["a", "b"], "tool": ["name": "send_email"]], now: 1_796_292_041_835)
        #expect(line.hasSuffix("}\n") && line.filter { $0 == "\n" }.count == 1)
        let object = try JSON.parse(line)
        #expect(object["ts"]?.stringValue == "2026-12-03T10:00:41.835Z")
        #expect(object["level"]?.stringValue == "warning")
        #expect(object["label"]?.stringValue == "tether.worker")
        #expect(object["message"]?.stringValue == "tool failed")
        #expect(object["executionId"]?.stringValue == "exec_A")
        #expect(object["tenant"]?.stringValue == "acme")
        #expect(object["attempt"]?.stringValue == "2")  // the call's own metadata wins
        #expect(object["calls"] == ["a", "b"])
        #expect(object["tool"]?["name"]?.stringValue == "send_email")
        // A message with quotes and newlines stays one line.
        let tricky = JSONLogHandler.line(level: .info, label: "l", message: "a \"b\"\nc", metadata: [:], nil)
        #expect(tricky.filter { $0 == "\n" }.count == 1)
        #expect(try JSON.parse(tricky)["message"]?.stringValue == "a \"b\"\nc")
    }

    @Test func aServerLogsJSONLinesNamingTheExecutionTenantAndAgent() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        var errors = Pipe()
        let (server, port) = try await startListening { port in
            errors = Pipe()  // a pipe handed to a process is closed in this one: each try gets its own
            return try launch(
                "serve", harness,
                environment: ["TETHER_PORT": "\(port)", "LOG_FORMAT": "json", "LOG_LEVEL": "debug"], errors: errors)
        }
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        let client = HTTPClient(port: port)
        #expect(try await eventually(20) { (try? await client.send(.GET, "/healthz").status) == 200 })
        let body = Array(#"{"messages":[{"role":"user","content":"email ivy@example.com"}]}"#.utf8)
        let stream = try await client.open(
            .POST, "/run/api/executions", headers: harness.auth() + [("Content-Type", "application/json")], body: body)
        _ = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let id = stream.executionID
        let cancel = try await client.send(.POST, "/run/api/executions/\(id)/cancel", headers: harness.auth())
        #expect(cancel.status == 200)
        _ = try await readFrames(stream) { _ in false }
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()

        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let lines = text.split(separator: "\n")
        #expect(!lines.isEmpty)
        let objects = lines.compactMap { try? JSON.parse(String($0)) }
        #expect(objects.count == lines.count, "every line is a JSON object: \(text)")
        let about = objects.filter { $0["executionId"]?.stringValue == id }
        let created = about.first { $0["message"]?.stringValue?.hasPrefix("created \(id)") == true }
        #expect(created?["tenant"]?.stringValue == "acme")
        #expect(created?["agent"]?.stringValue == "demo")
        #expect(created?["label"]?.stringValue?.hasPrefix("tether") == true)
        let cancelled = about.first { $0["message"]?.stringValue == "cancelled \(id)" }
        #expect(cancelled?["tenant"]?.stringValue == "acme" && cancelled?["agent"]?.stringValue == "demo")
        // The worker's line about the same execution carries them too.
        let stopped = about.first { $0["message"]?.stringValue?.hasPrefix("execution \(id) parked until") == true }
        #expect(stopped?["tenant"]?.stringValue == "acme" && stopped?["agent"]?.stringValue == "demo", "\(about)")
    }
}
