import Foundation
import TestSupport
import Testing
import TetherClient
import TetherCore

#if canImport(Glibc)
    import Glibc
#endif

/// The `tether` executable of this build (`swift build --build-tests` builds it beside the tests).
let tetherExecutable: URL = {
    let bundle = Bundle.main.bundleURL
    // swift test runs tests from .build/<triple>/debug; the executable sits in the same folder.
    for folder in [bundle.deletingLastPathComponent(), bundle] {
        let candidate = folder.appendingPathComponent("tether")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
    }
    return URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "../../.build/debug/tether")
}()

/// Starts `tether <command> [arguments]` with the harness's Redis, prefix and settings.
func launch(
    _ command: String, _ harness: Harness, arguments: [String] = [], environment extra: [String: String] = [:],
    output: Pipe? = nil, errors: Pipe? = nil, config: String? = nil
) throws -> Process {
    let process = Process()
    process.executableURL = tetherExecutable
    let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "../../config/tether.yaml")
    process.arguments =
        command.split(separator: " ").map(String.init) + ["--config", config ?? shipped.path] + arguments
    var environment = ProcessInfo.processInfo.environment
    environment["TETHER_REDIS_URL"] = harness.config.redis.url
    environment["TETHER_PREFIX"] = harness.config.redis.prefix
    environment["TETHER_REDIS_SHARDS"] = String(harness.config.redis.shards)
    environment["LOG_LEVEL"] = "critical"
    for (key, value) in extra { environment[key] = value }
    process.environment = environment
    process.standardOutput = output ?? FileHandle.nullDevice
    process.standardError = errors ?? FileHandle.nullDevice
    try process.run()
    return process
}

/// Writes a configuration file (removed by the caller) with an agent `bot` whose model is `model` (an OpenAI fake)
/// and which may call `tools`; `before` goes ahead of the agents (a `tools:` section).
func botConfig(model: FakeProvider, tools: [String], before: String = "") throws -> URL {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("bot-\(Identifiers.token(6)).yaml")
    try """
    \(before)
    agents:
      - id: bot
        model: {provider: openai, name: gpt-4.1-mini, baseURL: "\(model.baseURL)/v1", apiKeyEnv: \(providerKeyVariable)}
        tools: [\(tools.joined(separator: ", "))]
    """.write(to: file, atomically: true, encoding: .utf8)
    return file
}

/// Runs `tether <command> [arguments]` to its end and returns its exit status and standard output.
func runTether(_ command: String, _ harness: Harness, arguments: [String] = []) throws -> (Int32, String) {
    let pipe = Pipe()
    let process = try launch(command, harness, arguments: arguments, output: pipe)
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite("Real processes", .serialized, .timeLimit(.minutes(2)))
struct ProcessTests {
    @Test func aKilledWorkerProcessIsTakenOverWithoutLosingOrRepeatingAnything() async throws {
        #expect(
            FileManager.default.isExecutableFile(atPath: tetherExecutable.path), "build the tether executable first")
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let settings = ["TETHER_DEMO_TOKEN_DELAY_MS": "20", "TETHER_LEASE_SECONDS": "1"]
        let first = try launch("worker", harness, environment: settings)
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        let stream = try await harness.create("count to 80")
        var frames = try await readFrames(stream) { $0.count >= 15 }
        // As abrupt as a crash: no chance to hand the job back.
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let second = try launch("worker", harness, environment: settings)
        defer { if second.isRunning { kill(second.processIdentifier, SIGKILL) } }
        frames += try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        #expect(replyText(frames) == (1...80).map(String.init).joined(separator: " "))
        let ids = frames.compactMap { $0.event.id }
        #expect(Set(ids).count == ids.count)
        #expect(try #require(try await harness.store.record(stream.executionID)).fence == 2)
        // Each worker entry names the fence it was appended under: the first worker's, then only the second's.
        let entries = ExecutionStore.parseEntriesRaw(
            try await harness.redis.send("XRANGE", harness.store.keys.events(stream.executionID), "-", "+"))
        let fences = entries.compactMap { $0.fields["fence"] }
        #expect(entries.first?.fields["fence"] == nil, "execution-started is the gateway's")
        #expect(fences.first == "1" && fences.last == "2" && fences == fences.sorted(), "\(fences)")
        #expect(try await harness.pendingJobs() == 0)
    }

    @Test func aWorkerKilledInTheMiddleOfAModelTurnIsTakenOverTheTurnAbortedAndRedone() async throws {
        let fake = try await FakeProvider.start()
        defer { fake.stop() }
        // Turn 1 calls a tool; turn 2 streams half a reply, then hangs; the redone turn 2 is whole.
        fake.enqueue(.stream(Array(ProviderTests.oneCall(name: "get_weather", arguments: #"{"city":"Oslo"}"#).utf8)))
        let text = try fixture("openai-text.sse")
        var hanging = FakeProvider.Reply.stream(Array(text[..<offsets(of: " sunny", in: text)[0]]))
        hanging.hang = true
        fake.enqueue(hanging, .stream(text))
        let config = try botConfig(model: fake, tools: ["get_weather"])
        defer { try? FileManager.default.removeItem(at: config) }
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let token = try await harness.makeKey(tenant: "acme", agent: "bot")
        let settings = ["TETHER_LEASE_SECONDS": "1", providerKeyVariable: providerKey]
        let first = try launch("worker", harness, environment: settings, config: config.path)
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        let stream = try await harness.create("Weather in Oslo?", token: token)
        var frames = try await readFrames(stream) { $0.contains { $0.content == " and" } }
        #expect(frames.filter { $0.type == "tool-output-available" }.count == 1)
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let second = try launch("worker", harness, environment: settings, config: config.path)
        defer { if second.isRunning { kill(second.processIdentifier, SIGKILL) } }
        frames += try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        let aborted = frames.filter { $0.typed?["data"]?["type"]?.stringValue == "turn-aborted" }
        #expect(aborted.count == 1)
        // A client that drops the aborted turn's text has the redone turn's reply once.
        #expect(replyText(frames) == "Paris is 18°C and sunny — enjoy your café! 🌤")
        // The tool ran once: its output was logged before the crash, and the redone turn sees it.
        #expect(frames.filter { $0.type == "tool-output-available" }.count == 1)
        #expect(fake.received.count == 3)
        let last = try #require(fake.received.last?.body["messages"]?.arrayValue)
        #expect(last.filter { $0["role"] == "tool" }.count == 1)
        #expect(try #require(try await harness.store.record(stream.executionID)).fence == 2)
    }

    @Test func aWorkerKilledAfterToolStartedRunsTheToolAgainWithTheSameIdempotencyKey() async throws {
        let model = try await FakeProvider.start()
        defer { model.stop() }
        let endpoint = try await FakeProvider.start()
        defer { endpoint.stop() }
        // The first call never answers (the worker dies meanwhile); the rerun gets an answer.
        var hanging = FakeProvider.Reply.json("")
        hanging.pieces = []
        hanging.hang = true
        endpoint.enqueue(hanging, .json(#"{"ticketId":"T-9"}"#))
        model.enqueue(
            .stream(Array(ProviderTests.oneCall(name: "create_ticket", arguments: #"{"title":"x"}"#).utf8)),
            .stream(try fixture("openai-text.sse")))
        let config = try botConfig(
            model: model, tools: ["create_ticket"],
            before: """
                tools:
                  http:
                    - {name: create_ticket, url: "\(endpoint.baseURL)/tickets", timeoutSeconds: 60}
                """)
        defer { try? FileManager.default.removeItem(at: config) }
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let token = try await harness.makeKey(tenant: "acme", agent: "bot")
        let settings = ["TETHER_LEASE_SECONDS": "1", providerKeyVariable: providerKey]
        let first = try launch("worker", harness, environment: settings, config: config.path)
        defer { if first.isRunning { kill(first.processIdentifier, SIGKILL) } }
        let stream = try await harness.create("Open a ticket", token: token)
        var frames = try await readFrames(stream) { $0.contains { $0.typed?["data"]?["type"] == "tool-started" } }
        #expect(try await eventually(10) { endpoint.received.count == 1 })
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let second = try launch("worker", harness, environment: settings, config: config.path)
        defer { if second.isRunning { kill(second.processIdentifier, SIGKILL) } }
        frames += try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        // The endpoint saw the same call twice, with the same key: at-least-once, and it can tell.
        let keys = endpoint.received.map { $0.headers["idempotency-key"] }
        #expect(keys.count == 2)
        #expect(keys[0] == "\(stream.executionID):call_T1" && keys[1] == keys[0])
        let starts = frames.compactMap { $0.typed?["data"] }.filter { $0["type"] == "tool-started" }
        #expect(starts.map { $0["attempt"]?.numberValue } == [1, 2])
        #expect(frames.filter { $0.type == "tool-output-available" }.count == 1)
        #expect(model.received.count == 2)
    }

    @Test func sigtermEndsOpenStreamsCleanly() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let (gateway, port) = try await startListening { port in
            try launch("serve", harness, environment: ["TETHER_PORT": "\(port)"])
        }
        defer { if gateway.isRunning { kill(gateway.processIdentifier, SIGKILL) } }
        let client = HTTPClient(port: port)
        #expect(try await eventually(20) { (try? await client.send(.GET, "/healthz").status) == 200 })
        let body = Array(#"{"messages":[{"role":"user","content":"email ivy@example.com"}]}"#.utf8)
        let stream = try await client.open(
            .POST, "/run/api/executions", headers: harness.auth() + [("Content-Type", "application/json")], body: body)
        let frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        #expect(frames.last?.type == "tool-approval-request")
        let start = ContinuousClock.now
        kill(gateway.processIdentifier, SIGTERM)
        // The response ends (no error, no hang), and the process exits.
        let rest = try await readFrames(stream) { _ in false }
        #expect(rest.allSatisfy { $0.event.id != nil })
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(try await eventually(10) { !gateway.isRunning })
        #expect(gateway.terminationStatus == 0)
        // Nothing was lost: the execution is still there, waiting, for any other gateway.
        #expect(try await harness.status(stream.executionID).status == 200)
    }

    @Test func keysCommandsCreateListAndRevoke() async throws {
        let harness = try await Harness.start(withWorker: false) { $0.http.keyCacheSeconds = 0.2 }
        defer { harness.stop() }
        let (created, output) = try runTether(
            "keys create", harness, arguments: ["--tenant", "acme", "--agent", "demo"])
        #expect(created == 0)
        let token = output.trimmingCharacters(in: .whitespacesAndNewlines)
        let id = try #require(APIKeys.parse(token)?.id)
        #expect(try await harness.status("exec_none", token: token).status == 404)  // the key works
        let (listed, list) = try runTether("keys list", harness)
        #expect(listed == 0)
        let row = try #require(list.split(separator: "\n").first { $0.hasPrefix(id + "\t") })
        #expect(row.contains("\tacme\tdemo\tredis\t"))
        #expect(!list.contains(token))  // secrets are never printed again
        let (verified, principal) = try runTether("keys verify", harness, arguments: [token])
        #expect(verified == 0)
        #expect(principal.hasPrefix("tenant acme agent demo"))
        let (revoked, _) = try runTether("keys revoke", harness, arguments: [id])
        #expect(revoked == 0)
        #expect(try await eventually(3) { try await harness.status("exec_none", token: token).status == 401 })
        #expect(try runTether("keys verify", harness, arguments: [token]).0 == 1)
        let (unknown, _) = try runTether("keys revoke", harness, arguments: ["nosuchkey"])
        #expect(unknown != 0)
        // Names that could run into the next part of a Redis key are refused.
        #expect(try runTether("keys create", harness, arguments: ["--tenant", "a:b", "--agent", "c"]).0 != 0)
        // So is an agent that is not configured.
        #expect(try runTether("keys create", harness, arguments: ["--tenant", "acme", "--agent", "nosuch"]).0 != 0)
    }

    @Test func aBadConfigurationStartsNothingAndSaysWhereTheProblemIs() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(Identifiers.token(6)).yaml")
        try "http:\n  port: 8080\n  heartbeatSeconds: 0\n".write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = tetherExecutable
        process.arguments = ["serve", "--config", file.path]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 78)
        #expect(text.contains("\(file.path):3: http.heartbeatSeconds: must be a number from 0.05 to 3600"), "\(text)")
    }
}
