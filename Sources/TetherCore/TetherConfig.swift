import Foundation
import Yams

/// Tether's configuration: `config/tether.yaml`, then environment overrides (`TETHER_*`).
public struct TetherConfig: Sendable, Codable, Equatable {
    /// Redis settings.
    public struct Redis: Sendable, Codable, Equatable {
        /// `redis://[user[:password]@]host[:port][/db]` or `unix:///path`.
        public var url: String = "redis://127.0.0.1:6379/0"
        /// The prefix of every key (`tether:{exec_…}:meta`).
        public var prefix: String = "tether"
        /// Pooled connections for ordinary commands, per process.
        public var poolSize: Int = 16
        /// Milliseconds an ordinary command may wait for its reply.
        public var commandTimeoutMilliseconds: Int = 5000
        /// Makes the defaults.
        public init() {}
    }

    /// HTTP gateway settings.
    public struct HTTP: Sendable, Codable, Equatable {
        /// The address to listen on.
        public var host: String = "127.0.0.1"
        /// The port to listen on.
        public var port: Int = 8080
        /// The largest request body accepted, in bytes (413 above).
        public var bodyLimitBytes: Int = 1_048_576
        /// Seconds between heartbeat comments on an idle stream.
        public var heartbeatSeconds: Double = 15
        /// Origins allowed by CORS; `*` allows any.
        public var corsAllowedOrigins: [String] = ["*"]
        /// Seconds an API key lookup is cached (a revoked key stops working within this time).
        public var keyCacheSeconds: Double = 2
        /// Connections waiting to be accepted (`listen` backlog; the kernel caps it at `net.core.somaxconn`). Too
        /// small, and a burst of new clients waits for SYN retransmits (1 s, 3 s, 7 s...).
        public var backlog: Int = 4096
        /// Signals queued per SSE client before the newest are dropped (the client then catches up from Redis):
        /// a slow reader costs bounded memory.
        public var clientQueueLength: Int = 256
        /// Makes the defaults.
        public init() {}
    }

    /// Event log settings.
    public struct Streams: Sendable, Codable, Equatable {
        /// Approximate most entries kept per execution's event stream (`XADD MAXLEN ~`).
        public var maxLength: Int = 100_000
        /// Seconds an execution's keys live after it finished.
        public var retentionSeconds: Int = 7 * 24 * 3600
        /// Makes the defaults.
        public init() {}
    }

    /// Worker settings.
    public struct Workers: Sendable, Codable, Equatable {
        /// Executions one worker process runs at once.
        public var concurrency: Int = 32
        /// Seconds without renewal after which another worker takes an execution over.
        public var leaseSeconds: Double = 30
        /// Makes the defaults.
        public init() {}
    }

    /// The built-in demo model.
    public struct Demo: Sendable, Codable, Equatable {
        /// Milliseconds between streamed tokens (0 streams as fast as possible).
        public var tokenDelayMilliseconds: Int = 30
        /// Makes the defaults.
        public init() {}
    }

    /// An API key declared in the configuration file (keys made with `tether keys create` live in Redis).
    public struct APIKey: Sendable, Codable, Equatable {
        /// The public key id (the `<id>` of `tk_<id>_<secret>`).
        public var id: String
        /// The tenant the key belongs to.
        public var tenant: String
        /// The agent the key may run.
        public var agent: String
        /// Lower-case hex SHA-256 of the secret part.
        public var secretSha256: String
        /// Makes a key entry.
        public init(id: String, tenant: String, agent: String, secretSha256: String) {
            self.id = id
            self.tenant = tenant
            self.agent = agent
            self.secretSha256 = secretSha256
        }
    }

    /// Redis settings.
    public var redis = Redis()
    /// HTTP settings.
    public var http = HTTP()
    /// Event log settings.
    public var streams = Streams()
    /// Worker settings.
    public var workers = Workers()
    /// Demo model settings.
    public var demo = Demo()
    /// API keys from the file.
    public var apiKeys: [APIKey] = []

    /// The defaults.
    public init() {}

    /// Reads a YAML file (missing sections keep their defaults).
    public static func load(path: String) throws -> TetherConfig {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try parse(yaml: text)
    }

    /// Parses YAML text (missing sections keep their defaults).
    public static func parse(yaml: String) throws -> TetherConfig {
        if yaml.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return TetherConfig() }
        return try YAMLDecoder().decode(TetherConfig.self, from: yaml)
    }

    /// Applies `TETHER_REDIS_URL`, `TETHER_PREFIX`, `TETHER_HOST`, `TETHER_PORT`, `TETHER_WORKERS`,
    /// `TETHER_LEASE_SECONDS`, `TETHER_HEARTBEAT_SECONDS`, `TETHER_DEMO_TOKEN_DELAY_MS` and
    /// `TETHER_BODY_LIMIT_BYTES`.
    public mutating func applyEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) {
        if let v = environment["TETHER_REDIS_URL"], !v.isEmpty { redis.url = v }
        if let v = environment["TETHER_PREFIX"], !v.isEmpty { redis.prefix = v }
        if let v = environment["TETHER_HOST"], !v.isEmpty { http.host = v }
        if let v = environment["TETHER_PORT"].flatMap(Int.init) { http.port = v }
        if let v = environment["TETHER_WORKERS"].flatMap(Int.init) { workers.concurrency = v }
        if let v = environment["TETHER_LEASE_SECONDS"].flatMap(Double.init) { workers.leaseSeconds = v }
        if let v = environment["TETHER_HEARTBEAT_SECONDS"].flatMap(Double.init) { http.heartbeatSeconds = v }
        if let v = environment["TETHER_DEMO_TOKEN_DELAY_MS"].flatMap(Int.init) { demo.tokenDelayMilliseconds = v }
        if let v = environment["TETHER_BODY_LIMIT_BYTES"].flatMap(Int.init) { http.bodyLimitBytes = v }
    }
}

extension TetherConfig.Redis {
    private enum CodingKeys: String, CodingKey { case url, prefix, poolSize, commandTimeoutMilliseconds }
    /// Decodes, keeping defaults for missing keys.
    public init(from decoder: any Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        url = try c.decodeIfPresent(String.self, forKey: .url) ?? url
        prefix = try c.decodeIfPresent(String.self, forKey: .prefix) ?? prefix
        poolSize = try c.decodeIfPresent(Int.self, forKey: .poolSize) ?? poolSize
        commandTimeoutMilliseconds =
            try c.decodeIfPresent(Int.self, forKey: .commandTimeoutMilliseconds) ?? commandTimeoutMilliseconds
    }
}

extension TetherConfig.HTTP {
    private enum CodingKeys: String, CodingKey {
        case host, port, bodyLimitBytes, heartbeatSeconds, corsAllowedOrigins, keyCacheSeconds, backlog
        case clientQueueLength
    }
    /// Decodes, keeping defaults for missing keys.
    public init(from decoder: any Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        host = try c.decodeIfPresent(String.self, forKey: .host) ?? host
        port = try c.decodeIfPresent(Int.self, forKey: .port) ?? port
        bodyLimitBytes = try c.decodeIfPresent(Int.self, forKey: .bodyLimitBytes) ?? bodyLimitBytes
        heartbeatSeconds = try c.decodeIfPresent(Double.self, forKey: .heartbeatSeconds) ?? heartbeatSeconds
        corsAllowedOrigins = try c.decodeIfPresent([String].self, forKey: .corsAllowedOrigins) ?? corsAllowedOrigins
        keyCacheSeconds = try c.decodeIfPresent(Double.self, forKey: .keyCacheSeconds) ?? keyCacheSeconds
        backlog = try c.decodeIfPresent(Int.self, forKey: .backlog) ?? backlog
        clientQueueLength = try c.decodeIfPresent(Int.self, forKey: .clientQueueLength) ?? clientQueueLength
    }
}

extension TetherConfig.Streams {
    private enum CodingKeys: String, CodingKey { case maxLength, retentionSeconds }
    /// Decodes, keeping defaults for missing keys.
    public init(from decoder: any Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        maxLength = try c.decodeIfPresent(Int.self, forKey: .maxLength) ?? maxLength
        retentionSeconds = try c.decodeIfPresent(Int.self, forKey: .retentionSeconds) ?? retentionSeconds
    }
}

extension TetherConfig.Workers {
    private enum CodingKeys: String, CodingKey { case concurrency, leaseSeconds }
    /// Decodes, keeping defaults for missing keys.
    public init(from decoder: any Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        concurrency = try c.decodeIfPresent(Int.self, forKey: .concurrency) ?? concurrency
        leaseSeconds = try c.decodeIfPresent(Double.self, forKey: .leaseSeconds) ?? leaseSeconds
    }
}

extension TetherConfig.Demo {
    private enum CodingKeys: String, CodingKey { case tokenDelayMilliseconds }
    /// Decodes, keeping defaults for missing keys.
    public init(from decoder: any Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        tokenDelayMilliseconds =
            try c.decodeIfPresent(Int.self, forKey: .tokenDelayMilliseconds) ?? tokenDelayMilliseconds
    }
}

extension TetherConfig {
    private enum CodingKeys: String, CodingKey { case redis, http, streams, workers, demo, apiKeys }
    /// Decodes, keeping defaults for missing sections.
    public init(from decoder: any Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        redis = try c.decodeIfPresent(Redis.self, forKey: .redis) ?? redis
        http = try c.decodeIfPresent(HTTP.self, forKey: .http) ?? http
        streams = try c.decodeIfPresent(Streams.self, forKey: .streams) ?? streams
        workers = try c.decodeIfPresent(Workers.self, forKey: .workers) ?? workers
        demo = try c.decodeIfPresent(Demo.self, forKey: .demo) ?? demo
        apiKeys = try c.decodeIfPresent([APIKey].self, forKey: .apiKeys) ?? apiKeys
    }
}
