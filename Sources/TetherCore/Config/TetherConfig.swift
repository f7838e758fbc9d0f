/// Tether's configuration: `config/tether.yaml`, then environment overrides (`TETHER_*`).
///
/// The defaults below are the values a missing setting keeps. Which settings exist, their environment variables
/// and their valid ranges are listed once, in ``TetherConfig/settings``; ``TetherConfig/load(file:environment:)``
/// reads and checks them.
public struct TetherConfig: Sendable, Equatable {
    /// Redis settings.
    public struct Redis: Sendable, Equatable {
        /// `redis://[user[:password]@]host[:port][/db]` or `unix:///path`; or a cluster's seed nodes as
        /// `redis+cluster://[user[:password]@]host:port[,host:port…]`.
        public var url: String = "redis://127.0.0.1:6379/0"
        /// A Redis Cluster's seed nodes (`redis://host:port` each); when given, ``url`` is not used.
        public var cluster: [String] = []
        /// The number of shards (job streams, deadline and waiting sets; see ``Keys``): 0 for the default, which is
        /// 16 on a cluster and the single-Redis layout on one server.
        public var shards: Int = 0
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
    public struct HTTP: Sendable, Equatable {
        /// The address to listen on.
        public var host: String = "127.0.0.1"
        /// The port to listen on (0: any free port).
        public var port: Int = 8080
        /// The largest request body accepted, in bytes (413 above).
        public var bodyLimitBytes: Int = 1_048_576
        /// Seconds between heartbeat comments on an idle stream.
        public var heartbeatSeconds: Double = 15
        /// Origins allowed by CORS; `*` allows any.
        public var corsAllowedOrigins: [String] = ["*"]
        /// Seconds an API key lookup is cached (a revoked key stops working within this time).
        public var keyCacheSeconds: Double = 2
        /// Most API keys a gateway keeps cached (least recently used go first).
        public var keyCacheEntries: Int = 10_000
        /// Connections waiting to be accepted (`listen` backlog; the kernel caps it at `net.core.somaxconn`). Too
        /// small, and a burst of new clients waits for SYN retransmits (1 s, 3 s, 7 s...).
        public var backlog: Int = 4096
        /// Signals queued per SSE client before the newest are dropped (the client then catches up from Redis):
        /// a slow reader costs bounded memory.
        public var clientQueueLength: Int = 256
        /// Seconds from a request's first byte to the end of its headers; a connection slower than that is closed.
        public var headerTimeoutSeconds: Double = 10
        /// Seconds from the end of a request's headers to the end of its body; slower, and the connection is closed.
        public var bodyTimeoutSeconds: Double = 60
        /// Seconds a keep-alive connection may wait for its next request before it is closed.
        public var idleTimeoutSeconds: Double = 60
        /// Makes the defaults.
        public init() {}
    }

    /// Event log settings.
    public struct Streams: Sendable, Equatable {
        /// Approximate most entries kept per execution's event stream (`XADD MAXLEN ~`).
        public var maxLength: Int = 100_000
        /// Seconds an execution's keys live after it finished.
        public var retentionSeconds: Int = 7 * 24 * 3600
        /// Makes the defaults.
        public init() {}
    }

    /// Conversation settings.
    public struct Conversations: Sendable, Equatable {
        /// Most items kept in a conversation's history (the oldest go first).
        public var maxMessages: Int = 200
        /// Makes the defaults.
        public init() {}
    }

    /// Worker settings.
    public struct Workers: Sendable, Equatable {
        /// Executions one worker process runs at once.
        public var concurrency: Int = 32
        /// Seconds without renewal after which another worker takes an execution over.
        public var leaseSeconds: Double = 30
        /// The port of `tether worker`'s own `/metrics` listener, on `http.host` (0: none; `tether serve` has the
        /// gateway's).
        public var metricsPort: Int = 0
        /// Makes the defaults.
        public init() {}
    }

    /// The built-in demo model.
    public struct Demo: Sendable, Equatable {
        /// Milliseconds between streamed tokens (0 streams as fast as possible).
        public var tokenDelayMilliseconds: Int = 30
        /// Makes the defaults.
        public init() {}
    }

    /// An API key declared in the configuration file (keys made with `tether keys create` live in Redis).
    public struct APIKey: Sendable, Equatable {
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
    /// Conversation settings.
    public var conversations = Conversations()
    /// Worker settings.
    public var workers = Workers()
    /// Demo model settings.
    public var demo = Demo()
    /// API keys from the file.
    public var apiKeys: [APIKey] = []
    /// The HTTP tools and MCP servers agents may name (beside the built-in tools).
    public var tools = ToolSources()
    /// The agents: those of the file, and the built-in demo unless the file defines one named `demo`.
    public var agents: [AgentDefinition] = [.demo]

    /// The defaults.
    public init() {}

    /// How long an `Idempotency-Key` keeps naming its execution: a day, or the retention if that is shorter, so
    /// that a key never outlives the execution it names.
    public var idempotencySeconds: Int { min(24 * 3600, streams.retentionSeconds) }
}
