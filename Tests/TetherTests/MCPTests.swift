import Foundation
import MCP
import TestSupport
import Testing
import TetherClient
import TetherCore

@testable import TetherWorker

#if canImport(Glibc)
    import Glibc
#endif

/// The Python that has PyPI's `mcp` (scripts/test installs it into .venv-mcp and sets this variable).
let mcpPython = ProcessInfo.processInfo.environment["TETHER_TEST_MCP_PYTHON"] ?? ""
/// The real MCP server the tests start (Tests/mcp/test_server.py).
let mcpServerScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../mcp/test_server.py").standardizedFileURL.path

/// The supervisor's transitions, without processes or sockets.
@Suite("MCP connection supervisor (pure)")
struct MCPSupervisorTests {
    @Test func aConnectionIsMadeOnFirstUseAndSharedWhileItIsBeingMade() {
        var supervisor = MCPSupervisor<String>()
        let now = ContinuousClock.now
        guard case .connect(let generation) = supervisor.want(at: now) else {
            Issue.record("expected a connect")
            return
        }
        guard case .wait = supervisor.want(at: now) else {
            Issue.record("a second user waits")
            return
        }
        let took = supervisor.connected(generation, session: "s1")
        #expect(took)
        guard case .use("s1") = supervisor.want(at: now) else {
            Issue.record("expected the session")
            return
        }
    }

    @Test func anEndedConnectionIsMadeAgainAtOnceAndStaleNewsIsIgnored() {
        var supervisor = MCPSupervisor<String>()
        let now = ContinuousClock.now
        guard case .connect(let first) = supervisor.want(at: now) else { return }
        _ = supervisor.connected(first, session: "s1")
        let stale = supervisor.ended(first + 5)
        let ended = supervisor.ended(first)
        let again = supervisor.ended(first)
        #expect(stale == nil && ended == "s1" && again == nil)
        guard case .connect(let second) = supervisor.want(at: now) else {
            Issue.record("the next use connects again at once")
            return
        }
        #expect(second == first + 1)
        // The old connection reporting in late changes nothing.
        let late = supervisor.connected(first, session: "late")
        #expect(!late)
        let current = supervisor.connected(second, session: "s2")
        #expect(current)
    }

    @Test func aFailedConnectionBacksOffDoublingUpToThirtySeconds() {
        var supervisor = MCPSupervisor<String>()
        let now = ContinuousClock.now
        guard case .connect(let first) = supervisor.want(at: now) else { return }
        supervisor.failed(first, at: now)
        guard case .unavailable(let retryAt) = supervisor.want(at: now + .milliseconds(100)) else {
            Issue.record("unavailable during the backoff")
            return
        }
        #expect(retryAt == now + .milliseconds(500))
        guard case .connect(let second) = supervisor.want(at: now + .milliseconds(600)) else {
            Issue.record("tried again after it")
            return
        }
        supervisor.failed(second, at: now)
        guard case .unavailable(let later) = supervisor.want(at: now) else { return }
        #expect(later == now + .seconds(1))
        #expect(MCPSupervisor<String>.backoff(failures: 20) == .seconds(30))
        // Success resets the count.
        guard case .connect(let third) = supervisor.want(at: now + .seconds(2)) else { return }
        _ = supervisor.connected(third, session: "s")
        _ = supervisor.ended(third)
        guard case .connect = supervisor.want(at: now + .seconds(2)) else {
            Issue.record("no backoff after a connection that worked")
            return
        }
    }

    @Test func aConnectionThatClosesBeforeItIsHandedOutCountsAsFailed() {
        var supervisor = MCPSupervisor<String>()
        let now = ContinuousClock.now
        guard case .connect(let generation) = supervisor.want(at: now) else { return }
        #expect(supervisor.ended(generation) == nil)
        let handedOut = supervisor.connected(generation, session: "dead")
        #expect(!handedOut)
        guard case .unavailable = supervisor.want(at: .now) else {
            Issue.record("backs off after a connection that died on arrival")
            return
        }
    }

    @Test func resultsMapToOutcomes() {
        let text = CallTool.Result(content: [.text(text: "hi", annotations: nil, _meta: nil)])
        #expect(MCPToolServer.outcome(text) == .output("hi"))
        let structured = CallTool.Result(
            content: [.text(text: #"{"sum": 5}"#, annotations: nil, _meta: nil)], structuredContent: .object(["sum": 5])
        )
        #expect(MCPToolServer.outcome(structured) == .output(["sum": 5]))
        let failed = CallTool.Result(content: [.text(text: "nope", annotations: nil, _meta: nil)], isError: true)
        #expect(MCPToolServer.outcome(failed) == .failure("nope"))
        #expect(MCPToolServer.values(["n": 2, "x": 1.5, "s": "t"]) == ["n": .int(2), "x": .double(1.5), "s": "t"])
    }
}

@Suite("MCP servers (PyPI's mcp)", .serialized, .timeLimit(.minutes(2)))
struct MCPServerTests {
    /// A harness whose agent `bot` talks to `model` and may use all of `server`'s allowed tools.
    static func harness(model fake: FakeProvider, server: MCPServerDefinition) async throws -> (Harness, String) {
        try #require(!mcpPython.isEmpty, "set TETHER_TEST_MCP_PYTHON to a Python with PyPI's mcp (scripts/test does)")
        return try await Harness.startWithBot(model: fake, tools: ToolSources(mcp: [server]), agentTools: [server.name])
    }

    static func stdioServer() -> MCPServerDefinition {
        var server = MCPServerDefinition(
            name: "files", transport: .stdio(command: [mcpPython, mcpServerScript, "stdio"]))
        server.needsApproval = .matching(["delete_*"])
        server.allow = ["echo", "add", "fail", "delete_*", "crash", "calls", "grow", "late", "headers", "slow"]
        server.timeoutSeconds = 20
        return server
    }

    /// The test server as `files`, over `transport` (`stdio`, or `http`: then also the server process, to stop).
    static func filesServer(_ transport: String) async throws -> (MCPServerDefinition, Process?) {
        var server = stdioServer()
        guard transport == "http" else { return (server, nil) }
        let (process, url) = try await httpServer()
        server.transport = .http(url: url)
        return (server, process)
    }

    @Test(arguments: ["stdio", "http"])
    func toolsAreListedCalledAndApprovedByTheirOwnPolicy(transport: String) async throws {
        let (server, process) = try await Self.filesServer(transport)
        defer { process.map(Self.stop) }
        let model = try await FakeProvider.start()
        defer { model.stop() }
        model.enqueue(
            .stream(
                Array(
                    ProviderTests.calls([
                        (id: "c_echo", name: "files_echo", arguments: #"{"text":"hi there"}"#),
                        (id: "c_add", name: "files_add", arguments: #"{"a":2,"b":3}"#),
                        (id: "c_fail", name: "files_fail", arguments: #"{"reason":"disk on fire"}"#),
                        (id: "c_del", name: "files_delete_file", arguments: #"{"path":"/tmp/x"}"#),
                        (id: "c_secret", name: "files_secret", arguments: "{}"),
                        (id: "c_bad", name: "files_add", arguments: #"{"a":"two","b":3}"#),
                    ]).utf8)),
            .stream(try fixture("openai-text.sse")))
        let (harness, token) = try await Self.harness(model: model, server: server)
        defer { harness.stop() }
        let stream = try await harness.create("Use the files", token: token)
        let waiting = try await readFrames(stream) { frames in
            frames.contains { $0.type == "tool-approval-request" }
                && frames.filter { $0.type?.hasPrefix("tool-output") == true }.count == 5
        }
        // Listed with their schemas, prefixed; the tool the allow list leaves out is not offered.
        let offered = try #require(model.received.first?.body["tools"]?.arrayValue)
        let names = Set(offered.compactMap { $0["function"]?["name"]?.stringValue })
        #expect(names.isSuperset(of: ["files_echo", "files_add", "files_fail", "files_delete_file", "files_crash"]))
        #expect(!names.contains("files_secret"))
        let add = try #require(offered.first { $0["function"]?["name"] == "files_add" })
        #expect(add["function"]?["parameters"]?["required"] == ["a", "b"])
        // Only the call whose name matches the approval pattern waits.
        #expect(waiting.filter { $0.type == "tool-approval-request" }.map { $0.typed?["toolCallId"] } == ["c_del"])
        func result(_ id: String, in frames: [Frame]) -> JSON? {
            frames.first { $0.type?.hasPrefix("tool-output") == true && $0.typed?["toolCallId"] == .string(id) }?.typed
        }
        // mcp 2.x returns a plain value as structured content too ({"result": …}): that is the output.
        #expect(result("c_echo", in: waiting)?["output"] == ["result": "hi there"])
        #expect(result("c_add", in: waiting)?["output"] == ["sum": 5])
        #expect(result("c_fail", in: waiting)?["type"] == "tool-output-error")
        #expect(result("c_fail", in: waiting)?["errorText"]?.stringValue?.contains("disk on fire") == true)
        #expect(result("c_secret", in: waiting)?["errorText"]?.stringValue?.hasPrefix("There is no tool named") == true)
        // The schema the server listed is checked before the call.
        #expect(result("c_bad", in: waiting)?["errorText"]?.stringValue?.contains("input.a: must be integer") == true)
        #expect(try await harness.decide(stream.executionID, "c_del", approved: true, token: token).status == 200)
        let rest = try await readFrames(stream) { _ in false }
        #expect(result("c_del", in: rest)?["output"] == ["result": "deleted /tmp/x"])
        #expect(rest.last?.finishReason == "stop")
    }

    @Test func aStdioServerKilledInTheMiddleOfACallIsReportedAndStartedAgain() async throws {
        let model = try await FakeProvider.start()
        defer { model.stop() }
        Self.enqueueCrashThenCount(model)
        let (harness, token) = try await Self.harness(model: model, server: Self.stdioServer())
        defer { harness.stop() }
        let stream = try await harness.create("Crash it", token: token)
        let frames = try await readFrames(stream) { _ in false }
        try Self.expectCrashReportedThenAFreshProcess(frames)
    }

    @Test func anHTTPServerKilledInTheMiddleOfACallIsReportedAndANewSessionOpened() async throws {
        let (first, url) = try await Self.httpServer()
        defer { Self.stop(first) }
        let model = try await FakeProvider.start()
        defer { model.stop() }
        // The model's second turn takes 4 s: meanwhile the server is back (its operator restarted it), and the call
        // it makes goes to a new session.
        Self.enqueueCrashThenCount(model, pause: .seconds(4))
        var server = Self.stdioServer()
        server.transport = .http(url: url)
        let (harness, token) = try await Self.harness(model: model, server: server)
        defer { harness.stop() }
        let stream = try await harness.create("Crash it", token: token)
        var frames = try await readFrames(stream) { $0.contains { $0.type == "tool-output-error" } }
        let port = try #require(URLComponents(string: url)?.port)
        let second = try await Self.httpServer(port: port)
        defer { Self.stop(second.0) }
        frames += try await readFrames(stream) { _ in false }
        try Self.expectCrashReportedThenAFreshProcess(frames)
    }

    /// A turn that calls `crash`, then one that calls `calls` (taking `pause` to stream), then a reply.
    static func enqueueCrashThenCount(_ model: FakeProvider, pause: Duration = .milliseconds(3)) {
        let calls = Array(ProviderTests.calls([(id: "c_calls", name: "files_calls", arguments: "{}")]).utf8)
        var slow = FakeProvider.Reply.stream(calls, cutAt: [1])
        slow.pause = pause
        model.enqueue(
            .stream(Array(ProviderTests.oneCall(name: "files_crash", arguments: "{}").utf8)), slow,
            .stream((try? fixture("openai-text.sse")) ?? []))
    }

    static func expectCrashReportedThenAFreshProcess(_ frames: [Frame]) throws {
        #expect(frames.last?.finishReason == "stop")
        let crash = try #require(
            frames.first { $0.typed?["toolCallId"] == "call_T1" && $0.type == "tool-output-error" })
        #expect(crash.typed?["errorText"]?.stringValue?.contains("stopped during the call") == true, "\(crash.chunk)")
        // A new process answered the next call: its count starts again.
        let calls = try #require(frames.first { $0.typed?["toolCallId"] == "c_calls" })
        #expect(calls.typed?["output"] == ["result": 1], "\(calls.chunk)")
    }

    /// Stops a test server for good: uvicorn answers SIGTERM by waiting for its open streams, which a test's client
    /// may still hold, and the server was left running after the suite.
    static func stop(_ process: Process) {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Starts the test server on streamable HTTP on a free port; returns it and its URL once it answers.
    static func httpServer(port fixed: Int? = nil) async throws -> (Process, String) {
        try #require(!mcpPython.isEmpty, "set TETHER_TEST_MCP_PYTHON to a Python with PyPI's mcp (scripts/test does)")
        func start(_ port: Int) throws -> Process {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: mcpPython)
            process.arguments = [mcpServerScript, "http", String(port)]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            return process
        }
        let (process, port): (Process, Int)
        if let given = fixed {
            (process, port) = (try start(given), given)
        } else {
            (process, port) = try await startListening(start)
        }
        let client = HTTPClient(port: port)
        #expect(try await eventually(20) { (try? await client.send(.GET, "/mcp"))?.status != nil })
        return (process, "http://127.0.0.1:\(port)/mcp")
    }

    @Test func streamableHTTPMergesForwardedHeadersUnderTheConfiguredOnes() async throws {
        let (process, url) = try await Self.httpServer()
        defer { Self.stop(process) }
        let model = try await FakeProvider.start()
        defer { model.stop() }
        model.enqueue(
            .stream(
                Array(
                    ProviderTests.calls([
                        (id: "c_headers", name: "web_headers", arguments: "{}"),
                        (id: "c_echo", name: "web_echo", arguments: #"{"text":"over http"}"#),
                    ]).utf8)),
            .stream(try fixture("openai-text.sse")))
        var server = MCPServerDefinition(name: "web", transport: .http(url: url))
        server.headers = ["X-Configured": "yes", "X-User": "configured"]
        server.timeoutSeconds = 20
        let (harness, token) = try await Self.harness(model: model, server: server)
        defer { harness.stop() }
        let stream = try await harness.create(
            body: [
                "messages": [["role": "user", "content": "headers?"]],
                "forwardedHeaders": ["x-user": "forwarded", "x-tenant-user": "u-1"],
            ], token: token)
        let frames = try await readFrames(stream) { _ in false }
        #expect(frames.last?.finishReason == "stop")
        let headers = try #require(frames.first { $0.typed?["toolCallId"] == "c_headers" }?.typed?["output"])
        #expect(headers["x-configured"] == "yes")
        #expect(headers["x-user"] == "configured")
        #expect(headers["x-tenant-user"] == "u-1")
        #expect(frames.first { $0.typed?["toolCallId"] == "c_echo" }?.typed?["output"] == ["result": "over http"])
    }

    @Test func aCallThatTakesTooLongIsAbandonedAtItsTimeoutAndAServerThatDiesAtStartHangsNothing() async throws {
        try #require(!mcpPython.isEmpty, "set TETHER_TEST_MCP_PYTHON (scripts/test does)")
        var definition = Self.stdioServer()
        definition.timeoutSeconds = 1
        let server = MCPToolServer(definition, logger: Harness.quietLogger("mcp"))
        let context = ToolContext(
            executionID: "exec_1", toolCallID: "c1", deadline: .now + .seconds(20), logger: Harness.quietLogger("t"))
        #expect(!(await server.tools().isEmpty), "the server started")
        let start = ContinuousClock.now
        let slow = await server.call("slow", arguments: ["seconds": 30], context: context)
        #expect(slow == .failure("files_slow did not answer within 1 s."), "\(slow)")
        #expect(ContinuousClock.now - start < .seconds(5))
        // The server still answers the next call.
        #expect(
            await server.call("echo", arguments: ["text": "after"], context: context) == .output(["result": "after"]))
        await server.shutDown()
        // A command that exits at once: no tools, quickly, and no hang for whoever asks next.
        let broken = MCPToolServer(
            MCPServerDefinition(
                name: "broken", transport: .stdio(command: [mcpPython, "-c", "import sys; sys.exit(1)"])),
            logger: Harness.quietLogger("mcp"))
        let asked = ContinuousClock.now
        #expect(await broken.tools().isEmpty)
        #expect(await broken.tools().isEmpty)
        #expect(ContinuousClock.now - asked < .seconds(5))
        await broken.shutDown()
    }

    @Test(arguments: ["stdio", "http"])
    func aToolListChangeIsFollowed(transport: String) async throws {
        let definition: MCPServerDefinition
        var process: Process?
        if transport == "http" {
            let (started, url) = try await Self.httpServer()
            process = started
            definition = MCPServerDefinition(name: "web", transport: .http(url: url))
        } else {
            try #require(!mcpPython.isEmpty, "set TETHER_TEST_MCP_PYTHON (scripts/test does)")
            definition = Self.stdioServer()
        }
        defer { process.map(Self.stop) }
        let server = MCPToolServer(definition, logger: Harness.quietLogger("mcp"))
        defer { Task { await server.shutDown() } }
        let before = await server.tools().map(\.descriptor.name)
        #expect(before.contains(definition.prefix + "grow") && !before.contains(definition.prefix + "late"))
        let context = ToolContext(
            executionID: "exec_1", toolCallID: "c1", deadline: .now + .seconds(20), logger: Harness.quietLogger("t"))
        #expect(await server.call("grow", arguments: [:], context: context) == .output(["result": "grown"]))
        // The notification may come after the call's answer (over HTTP it comes on another stream).
        #expect(
            try await eventually(10) {
                await server.tools().contains { $0.descriptor.name == definition.prefix + "late" }
            })
    }
}
