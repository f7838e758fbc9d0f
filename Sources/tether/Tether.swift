import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import Prometheus
import RedisKit
import ServiceLifecycle
import TetherCore
import TetherGateway
import TetherWorker

/// The process entry point.
@main
enum TetherMain {
    static func main() async {
        // Swift concurrency's jobs run on NIO's event loops (sticky to the current loop), so a task awaiting a
        // Redis reply or writing an HTTP response resumes on the loop that completed it: no thread hop per await.
        // TETHER_NIO_EXECUTOR=0 keeps the default global executor (for comparison).
        // TETHER_THREADS sets the number of event loop threads (default: one per core).
        if let threads = ProcessInfo.processInfo.environment["TETHER_THREADS"].flatMap(Int.init), threads > 0 {
            NIOSingletons.groupLoopCountSuggestion = threads
        }
        if ProcessInfo.processInfo.environment["TETHER_NIO_EXECUTOR"] != "0" {
            NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        }
        let environment = ProcessInfo.processInfo.environment
        let level = environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .info
        // LOG_FORMAT=json: one JSON object per line (JSONLogHandler); text (the default) stays readable.
        switch environment["LOG_FORMAT"] ?? "" {
        case "json":
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        case "", "text":
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        case let other:
            FileHandle.standardError.write(Data("tether: LOG_FORMAT must be text or json, not \(other)\n".utf8))
            exit(78)
        }
        metricsRegistry = MetricsEndpoint.bootstrap()
        _ = OpenFileLimit.raised
        await Tether.main()
    }
}

/// The process's metrics (swift-metrics into Prometheus), bootstrapped before any command runs.
nonisolated(unsafe) var metricsRegistry = PrometheusCollectorRegistry()

/// The `tether` command line.
struct Tether: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tether",
        abstract: "Durable AI agent executions streamed over server-sent events, with Redis as the source of truth.",
        subcommands: [
            Serve.self, GatewayCommand.self, WorkerCommand.self, KeysCommand.self, InspectCommand.self, TopCommand.self,
            Bench.self,
        ]
    )
}

/// Options shared by every command that talks to Redis.
struct ConfigOptions: ParsableArguments {
    @Option(name: .customLong("config"), help: "Configuration file (default: config/tether.yaml when present).")
    var path: String?

    /// The configuration: file, then `TETHER_*` environment overrides. Every problem is printed, and the command
    /// exits with status 78 (`EX_CONFIG`) without starting anything.
    func load() throws -> TetherConfig {
        let environment = ProcessInfo.processInfo.environment
        let explicit = self.path ?? environment["TETHER_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
        let path = explicit ?? "config/tether.yaml"
        if explicit != nil, !FileManager.default.fileExists(atPath: path) {
            throw ValidationError("configuration file \(path) not found")
        }
        do {
            return try TetherConfig.load(
                file: FileManager.default.fileExists(atPath: path) ? path : nil, environment: environment,
                toolNames: Set(DemoTools.all.keys))
        } catch {
            FileHandle.standardError.write(Data("tether: invalid configuration:\n\(error)\n".utf8))
            throw ExitCode(78)
        }
    }

    /// The configuration, a Redis client for it and its API key store, for the `keys` commands; `body` runs with
    /// them and the client is shut down after.
    func withKeys<T>(_ body: (TetherConfig, APIKeys) async throws -> T) async throws -> T {
        let config = try load()
        let redis = try self.redis(config)
        defer { redis.shutdown() }
        return try await body(
            config, APIKeys(redis: redis, keys: config.redis.keys, configured: config.apiKeys))
    }

    /// A Redis client for the configuration (one server or a cluster), named `name` in `CLIENT LIST`
    /// (`TETHER_CLIENT_NAME` overrides).
    func redis(_ config: TetherConfig, name: String = "tether") throws -> any RedisClientProtocol {
        try config.redis.makeClient(name: ProcessInfo.processInfo.environment["TETHER_CLIENT_NAME"] ?? name)
    }
}

/// `tether serve`: a gateway and workers in one process.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a gateway and workers in one process.")
    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let config = try options.load()
        let redis = try options.redis(config)
        defer { redis.shutdown() }
        let gateway = Gateway(config: config, redis: redis, metrics: metricsRegistry)
        let worker = WorkerService(config: config, redis: redis)
        OpenFileLimit.log(Logger(label: "tether"))
        Logger(label: "tether").info(
            "serving on http://\(config.http.host):\(config.http.port) with \(config.workers.concurrency) worker slots, Redis \(RedisConfiguration.redacted(config.redis.url))"
        )
        try await gateway.makeApplication(services: [worker]).runService()
    }
}

/// `tether gateway`: the HTTP gateway alone.
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gateway", abstract: "Run the HTTP gateway only.")
    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let config = try options.load()
        let redis = try options.redis(config, name: "tether-gateway")
        defer { redis.shutdown() }
        OpenFileLimit.log(Logger(label: "tether.gateway"))
        try await Gateway(config: config, redis: redis, metrics: metricsRegistry).makeApplication().runService()
    }
}

/// `tether worker`: workers alone.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "worker", abstract: "Run agent workers only.")
    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let config = try options.load()
        let redis = try options.redis(config, name: "tether-worker")
        defer { redis.shutdown() }
        OpenFileLimit.log(Logger(label: "tether.worker"))
        var services: [any Service] = [WorkerService(config: config, redis: redis)]
        if config.workers.metricsPort > 0 {
            services.append(
                MetricsEndpoint.application(
                    registry: metricsRegistry, host: config.http.host, port: config.workers.metricsPort))
        }
        let group = ServiceGroup(
            configuration: .init(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "tether.worker")
            ))
        try await group.run()
    }
}

/// `tether keys`: API keys kept in Redis.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "Manage API keys.",
        subcommands: [Create.self, List.self, Revoke.self, Verify.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a key; it is printed once.")
        @OptionGroup var options: ConfigOptions
        @Option(help: "The tenant the key belongs to (1-64 characters of A-Z a-z 0-9 . _ -).") var tenant: String
        @Option(help: "The agent the key may run (same characters).") var agent: String

        func validate() throws {
            if let problem = Names.problem(tenant) { throw ValidationError("--tenant \(problem)") }
            if let problem = Names.problem(agent) { throw ValidationError("--agent \(problem)") }
        }

        func run() async throws {
            let token = try await options.withKeys { config, keys in
                guard config.agent(agent) != nil else {
                    throw ValidationError(
                        "no agent \(agent) is configured; the agents are \(config.agents.map(\.id).joined(separator: ", "))"
                    )
                }
                return try await keys.create(tenant: tenant, agent: agent).token
            }
            print(token)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List keys (never their secrets).")
        @OptionGroup var options: ConfigOptions

        func run() async throws {
            let all = try await options.withKeys { _, keys in try await keys.list() }
            print("ID\tTENANT\tAGENT\tSOURCE\tCREATED\tREVOKED")
            for key in all {
                print(
                    "\(key.id)\t\(key.tenant)\t\(key.agent)\t\(key.source)\t\(key.createdAt ?? "-")\t\(key.revokedAt ?? "-")"
                )
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a key as a gateway would; prints its tenant and agent, or exits with status 1.")
        @OptionGroup var options: ConfigOptions
        @Argument(help: "The whole key, tk_<id>_<secret>.") var token: String

        func run() async throws {
            let principal = try await options.withKeys { config, keys in
                try? await Authenticator(apiKeys: keys, ttl: .zero, capacity: 1).principal(
                    authorization: "Bearer \(token)")
            }
            guard let principal else {
                FileHandle.standardError.write(Data("tether: the key is unknown, revoked or malformed\n".utf8))
                throw ExitCode(1)
            }
            print("tenant \(principal.tenant) agent \(principal.agent) key \(principal.keyId)")
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key kept in Redis.")
        @OptionGroup var options: ConfigOptions
        @Argument(help: "The key's id (the part after tk_).") var id: String

        func run() async throws {
            let cacheSeconds = try await options.withKeys { config, keys in
                if config.apiKeys.contains(where: { $0.id == id }) {
                    throw ValidationError("key \(id) comes from the configuration file: remove it there")
                }
                guard try await keys.revoke(id: id) else { throw ValidationError("no key \(id)") }
                return config.http.keyCacheSeconds
            }
            print("revoked \(id); gateways refuse it within \(cacheSeconds) s")
        }
    }
}

/// `tether bench ...`: benchmarks against a real Redis server.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks against a real Redis server.",
        subcommands: [RedisBench.self, StreamBench.self, WaitingBench.self]
    )
}
