import Foundation
import Hummingbird
import Logging
import NIOCore
import RedisKit
import ServiceLifecycle
import Synchronization
import Testing
import TetherClient
import TetherCore
import TetherGateway
import TetherWorker

/// The Redis server of `scripts/test` (or a local default for a bare `swift test`); a `redis+cluster://` URL runs
/// the suite on a cluster (the sharded layout).
let testRedisURL = ProcessInfo.processInfo.environment["TETHER_TEST_REDIS_URL"] ?? "redis://127.0.0.1:6379"

/// Shards to use on a single server (`TETHER_TEST_SHARDS`, default 0: the single-Redis layout): the sharded
/// layout without a cluster.
let testShards = ProcessInfo.processInfo.environment["TETHER_TEST_SHARDS"].flatMap { Int($0) } ?? 0

/// A gateway (and optionally workers) in this process on a free port, with a key prefix of its own so tests
/// sharing one Redis never see each other's keys or jobs.
final class Harness: Sendable {
    let config: TetherConfig
    let redis: any RedisClientProtocol
    let gatewayRedis: any RedisClientProtocol
    let gateway: Gateway
    let port: Int
    let token: String
    private let task: Task<Void, any Error>
    private let workers = Mutex<[Task<Void, any Error>]>([])
    private let services = Mutex<[WorkerService]>([])

    static func start(
        tokenDelayMilliseconds: Int = 0, heartbeatSeconds: Double = 15, withWorker: Bool = true,
        leaseSeconds: Double = 30, poolSize: Int = 8, configure: (inout TetherConfig) -> Void = { _ in }
    ) async throws -> Harness {
        var config = TetherConfig()
        config.redis.url = testRedisURL
        config.redis.shards = testShards
        config.redis.prefix = "t" + Identifiers.token(8)
        config.redis.poolSize = poolSize
        config.http.host = "127.0.0.1"
        config.http.port = 0
        config.http.heartbeatSeconds = heartbeatSeconds
        config.demo.tokenDelayMilliseconds = tokenDelayMilliseconds
        config.workers.leaseSeconds = leaseSeconds
        config.workers.concurrency = 64
        configure(&config)
        return try await Harness(config: config, withWorker: withWorker)
    }

    /// A harness (with a worker) whose agent `bot` talks to `model` (an OpenAI fake) and may call `agentTools` of
    /// `tools`; returns it and a key for `bot`.
    static func startWithBot(
        model fake: FakeProvider, tools: ToolSources, agentTools: [String], withWorker: Bool = true,
        leaseSeconds: Double = 30, configure: (inout TetherConfig) -> Void = { _ in }
    ) async throws -> (Harness, String) {
        let harness = try await start(withWorker: withWorker, leaseSeconds: leaseSeconds) { config in
            configure(&config)
            var model = AgentDefinition.Model(provider: .openai, name: "gpt-4.1-mini")
            model.baseURL = fake.baseURL + "/v1"
            model.apiKeyEnvironment = providerKeyVariable
            model.timeoutSeconds = 20
            config.tools = tools
            config.agents = [AgentDefinition(id: "bot", model: model, tools: agentTools), .demo]
        }
        return (harness, try await harness.makeKey(tenant: "acme", agent: "bot"))
    }

    private init(config: TetherConfig, withWorker: Bool) async throws {
        self.config = config
        redis = try Self.client(config, name: "test")
        gatewayRedis = try Self.client(config, name: "gw-\(config.redis.prefix)")
        gateway = Gateway(config: config, redis: gatewayRedis, logger: Self.quietLogger("tether.gateway"))
        let keys = APIKeys(redis: redis, keys: config.redis.keys, configured: [])
        token = try await keys.create(tenant: "acme", agent: "demo").token
        let (portStream, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = gateway.makeApplication { channel in
            portContinuation.yield(channel.localAddress?.port ?? 0)
            portContinuation.finish()
        }
        task = Task { try await app.runService(gracefulShutdownSignals: []) }
        var iterator = portStream.makeAsyncIterator()
        port = await iterator.next() ?? 0
        if withWorker { startWorker() }
    }

    /// Test output stays readable: only critical messages (shutdown noise is expected at the end of each test).
    static func quietLogger(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel =
            ProcessInfo.processInfo.environment["TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .critical
        return logger
    }

    static func client(_ config: TetherConfig, name: String) throws -> any RedisClientProtocol {
        try config.redis.makeClient(name: name, logger: quietLogger("tether.redis"))
    }

    /// Sends `command` to the test Redis, or to every master of the test cluster.
    static func onEveryServer(_ command: RedisCommand) async throws {
        var config = TetherConfig()
        config.redis.url = testRedisURL
        let client = try config.redis.makeClient(name: "test-admin", logger: quietLogger("tether.redis"))
        defer { client.shutdown() }
        if let cluster = client as? RedisClusterClient {
            for reply in try await cluster.sendToMasters(command) { try reply.throwIfError() }
        } else {
            try await client.send(command)
        }
    }

    /// Starts a worker process's job loop (a new consumer); returns its index for ``stopWorker(_:)``.
    @discardableResult
    func startWorker() -> Int {
        let worker = WorkerService(
            config: config, redis: redis, environment: [providerKeyVariable: providerKey],
            logger: Self.quietLogger("tether.worker"))
        services.withLock { $0.append(worker) }
        return workers.withLock { workers in
            workers.append(Task { try await worker.run() })
            return workers.count - 1
        }
    }

    /// A count over every shard: `command` (`XLEN`, `ZCARD`...) of each shard's key, summed.
    func total(_ command: String, of key: (Int) -> String) async throws -> Int {
        let replies = try await redis.send(batch: store.keys.shards.map { RedisCommand(command, key($0)) })
        return replies.reduce(0) { $0 + ($1.int ?? 0) }
    }

    /// Job entries pending in the consumer groups of every shard.
    func pendingJobs() async throws -> Int {
        let keys = store.keys
        let replies = try await redis.send(
            batch: keys.shards.map { RedisCommand("XPENDING", keys.jobs(shard: $0), keys.jobsGroup) })
        return replies.reduce(0) { $0 + ($1.array?.first?.int ?? 0) }
    }

    /// Stops a worker abruptly, like ``stopWorker(_:)``, and returns once it has stopped.
    func stopWorkerAndWait(_ index: Int) async {
        let task = workers.withLock { $0[index] }
        task.cancel()
        _ = try? await task.value
    }

    /// Executions the workers started here hold now.
    var workersActive: Int { services.withLock { $0.reduce(0) { $0 + $1.activeCount } } }

    /// Stops a worker abruptly (its jobs stay pending, as after a crash).
    func stopWorker(_ index: Int) {
        workers.withLock { $0[index].cancel() }
    }

    func stop() {
        workers.withLock { workers in for worker in workers { worker.cancel() } }
        task.cancel()
        redis.shutdown()
        gatewayRedis.shutdown()
    }

    var http: HTTPClient { HTTPClient(port: port) }
    var store: ExecutionStore { gateway.store }

    func auth(_ token: String? = nil) -> [(String, String)] { [("Authorization", "Bearer \(token ?? self.token)")] }

    func makeKey(tenant: String, agent: String) async throws -> String {
        try await APIKeys(redis: redis, keys: config.redis.keys, configured: [])
            .create(tenant: tenant, agent: agent).token
    }

    /// POSTs a one-message execution and returns the open stream.
    func create(_ text: String, token: String? = nil) async throws -> HTTPStream {
        let body = JSON.object(["messages": [["role": "user", "content": .string(text)]]]).rendered
        return try await http.open(
            .POST, "/run/api/executions", headers: auth(token) + [("Content-Type", "application/json")],
            body: Array(body.utf8))
    }

    /// POSTs an execution with this body and returns the open stream.
    func create(body: JSON, token: String? = nil) async throws -> HTTPStream {
        try await http.open(
            .POST, "/run/api/executions", headers: auth(token) + [("Content-Type", "application/json")],
            body: Array(body.rendered.utf8))
    }

    func status(_ id: String, token: String? = nil) async throws -> HTTPResult {
        try await http.send(.GET, "/run/api/executions/\(id)", headers: auth(token))
    }

    func decide(_ id: String, _ toolCallID: String, approved: Bool, reason: String? = nil, token: String? = nil)
        async throws -> HTTPResult
    {
        var body: [String: JSON] = ["approved": .bool(approved)]
        if let reason { body["reason"] = .string(reason) }
        return try await http.send(
            .POST, "/run/api/executions/\(id)/approvals/\(toolCallID)",
            headers: auth(token) + [("Content-Type", "application/json")], body: Array(JSON.object(body).rendered.utf8))
    }

    func reconnect(_ id: String, headers: [(String, String)] = [], query: String = "", token: String? = nil)
        async throws -> HTTPStream
    {
        try await http.open(.GET, "/run/api/executions/\(id)/stream\(query)", headers: auth(token) + headers)
    }
}

/// A parsed frame of the chat-completion stream.
struct Frame {
    let event: SSEEvent
    let chunk: JSON

    init(_ event: SSEEvent) {
        self.event = event
        self.chunk = (try? JSON.parse(event.data)) ?? .null
    }

    var delta: JSON { chunk["choices"]?.arrayValue?.first?["delta"] ?? .null }
    var finishReason: String? { chunk["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue }
    var content: String? { delta["content"]?.stringValue }
    /// The typed Inkeep event carried as JSON in `delta.content`, if any.
    var typed: JSON? {
        guard let content, content.hasPrefix("{") else { return nil }
        return try? JSON.parse(content)
    }
    var type: String? { typed?["type"]?.stringValue }
}

/// Reads SSE frames until `stop` says so for the frames of this call (or the stream ends); frames already parsed
/// beyond that wait for the next call on the same stream.
func readFrames(_ stream: HTTPStream, until stop: ([Frame]) -> Bool) async throws -> [Frame] {
    try await stream.events.read(as: Frame.init, until: stop)
}

/// The reply text of a list of frames (plain text deltas only), as a client shows it: the text of a turn that was
/// aborted (`turn-aborted`) is dropped, since the turn is redone.
func replyText(_ frames: [Frame]) -> String {
    var text = ""
    var turnStart = text.endIndex
    for frame in frames {
        if let typed = frame.typed {
            switch typed["data"]?["type"]?.stringValue {
            case "turn-started": turnStart = text.endIndex
            case "turn-aborted": text = String(text[..<turnStart])
            default: break
            }
        } else if let content = frame.content {
            text += content
        }
    }
    return text
}

/// The tool calls of a list of frames, assembled as an OpenAI client does: by index within each turn, the first
/// chunk's id and name, then the argument fragments concatenated.
func toolCalls(_ frames: [Frame]) -> [JSON] {
    var calls: [JSON] = []
    var turn: [Int: Int] = [:]
    for frame in frames {
        if frame.typed?["data"]?["type"]?.stringValue == "turn-started" { turn = [:] }
        for delta in frame.delta["tool_calls"]?.arrayValue ?? [] {
            let index = Int(delta["index"]?.numberValue ?? 0)
            if let id = delta["id"]?.stringValue {
                turn[index] = calls.count
                calls.append([
                    "id": .string(id),
                    "function": [
                        "name": delta["function"]?["name"] ?? .null,
                        "arguments": .string(delta["function"]?["arguments"]?.stringValue ?? ""),
                    ],
                ])
            } else if let slot = turn[index], let fragment = delta["function"]?["arguments"]?.stringValue {
                let arguments = (calls[slot]["function"]?["arguments"]?.stringValue ?? "") + fragment
                calls[slot] = [
                    "id": calls[slot]["id"] ?? .null,
                    "function": ["name": calls[slot]["function"]?["name"] ?? .null, "arguments": .string(arguments)],
                ]
            }
        }
    }
    return calls
}

extension HTTPStream {
    /// The execution id from `x-workflow-run-id`.
    var executionID: String { headers["x-workflow-run-id"] ?? "" }
}
