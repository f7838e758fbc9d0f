import RedisKit

extension TetherConfig {
    /// One setting of the file: its path (`http.port`), its environment override, and how a value is read and
    /// checked. ``settings`` is the one list of them; the loader, the environment overrides and the tests of the
    /// shipped file all go by it.
    public struct Setting {
        /// The dotted path in the file: `section.field`.
        public let path: String
        /// The environment variable that overrides it, if any.
        public let environment: String?
        let kind: Kind

        enum Kind {
            /// A whole number within the range.
            case integer(WritableKeyPath<TetherConfig, Int>, ClosedRange<Int>)
            /// A number within the range.
            case number(WritableKeyPath<TetherConfig, Double>, ClosedRange<Double>)
            /// Text; the check returns the problem, or `nil` when the text is fine.
            case text(WritableKeyPath<TetherConfig, String>, check: (String) -> String?)
            /// A list of texts, each checked; from the environment, comma-separated.
            case texts(WritableKeyPath<TetherConfig, [String]>, check: (String) -> String?)
        }

        init(_ path: String, env: String? = nil, _ kind: Kind) {
            self.path = path
            self.environment = env
            self.kind = kind
        }

        /// The valid values, as an error message says them.
        public var rangeDescription: String {
            switch kind {
            case .integer(_, let range): ConfigReader.describe(range)
            case .number(_, let range): ConfigReader.describe(range)
            case .text: "text"
            case .texts: "a list of texts"
            }
        }
    }

    /// Every setting of the file but `apiKeys`, with its environment variable and valid range.
    public static var settings: [Setting] {
        [
            Setting("redis.url", env: "TETHER_REDIS_URL", .text(\.redis.url, check: redisURLProblem)),
            Setting("redis.cluster", env: "TETHER_REDIS_CLUSTER", .texts(\.redis.cluster, check: clusterSeedProblem)),
            Setting("redis.shards", env: "TETHER_REDIS_SHARDS", .integer(\.redis.shards, 0...1024)),
            Setting("redis.prefix", env: "TETHER_PREFIX", .text(\.redis.prefix, check: Names.prefixProblem)),
            Setting("redis.poolSize", .integer(\.redis.poolSize, 1...1024)),
            Setting("redis.commandTimeoutMilliseconds", .integer(\.redis.commandTimeoutMilliseconds, 10...600_000)),
            Setting("http.host", env: "TETHER_HOST", .text(\.http.host, check: hostProblem)),
            Setting("http.port", env: "TETHER_PORT", .integer(\.http.port, 0...65535)),
            Setting(
                "http.bodyLimitBytes", env: "TETHER_BODY_LIMIT_BYTES", .integer(\.http.bodyLimitBytes, 1024...1 << 30)),
            Setting(
                "http.heartbeatSeconds", env: "TETHER_HEARTBEAT_SECONDS", .number(\.http.heartbeatSeconds, 0.05...3600)),
            Setting("http.corsAllowedOrigins", .texts(\.http.corsAllowedOrigins, check: originProblem)),
            Setting("http.keyCacheSeconds", .number(\.http.keyCacheSeconds, 0...3600)),
            Setting("http.keyCacheEntries", .integer(\.http.keyCacheEntries, 1...10_000_000)),
            Setting("http.backlog", .integer(\.http.backlog, 1...65535)),
            Setting("http.clientQueueLength", .integer(\.http.clientQueueLength, 1...1_000_000)),
            Setting("http.headerTimeoutSeconds", .number(\.http.headerTimeoutSeconds, 0.05...3600)),
            Setting("http.bodyTimeoutSeconds", .number(\.http.bodyTimeoutSeconds, 0.05...86400)),
            Setting("http.idleTimeoutSeconds", .number(\.http.idleTimeoutSeconds, 0.05...86400)),
            Setting("streams.maxLength", .integer(\.streams.maxLength, 1...1_000_000_000)),
            Setting("streams.retentionSeconds", .integer(\.streams.retentionSeconds, 1...10 * 365 * 86400)),
            Setting("conversations.maxMessages", .integer(\.conversations.maxMessages, 1...100_000)),
            Setting("workers.concurrency", env: "TETHER_WORKERS", .integer(\.workers.concurrency, 1...100_000)),
            Setting("workers.leaseSeconds", env: "TETHER_LEASE_SECONDS", .number(\.workers.leaseSeconds, 0.1...3600)),
            Setting(
                "workers.metricsPort", env: "TETHER_WORKER_METRICS_PORT", .integer(\.workers.metricsPort, 0...65535)),
            Setting(
                "demo.tokenDelayMilliseconds", env: "TETHER_DEMO_TOKEN_DELAY_MS",
                .integer(\.demo.tokenDelayMilliseconds, 0...60_000)),
        ]
    }

    /// The sections of the file, in order.
    public static let sections = [
        "redis", "http", "streams", "conversations", "workers", "demo", "apiKeys", "tools",
        "agents",
    ]

    static func redisURLProblem(_ url: String) -> String? {
        do {
            if let seeds = try Redis.clusterSeeds(url) {
                for seed in seeds { _ = try RedisConfiguration(url: seed) }
            } else {
                _ = try RedisConfiguration(url: url)
            }
            return nil
        } catch {
            return "is not a Redis URL (redis://[user[:password]@]host[:port][/db], unix:///path or "
                + "redis+cluster://host:port,host:port…): \(JSON.quoted(RedisConfiguration.redacted(url)))"
        }
    }

    static func clusterSeedProblem(_ url: String) -> String? {
        guard let configuration = try? RedisConfiguration(url: url), case .tcp = configuration.endpoint else {
            return "is not a cluster node's URL (redis://[user[:password]@]host:port): "
                + JSON.quoted(RedisConfiguration.redacted(url))
        }
        return nil
    }

    static func hostProblem(_ host: String) -> String? {
        host.isEmpty || host.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7F }) ? "must be a host name or address" : nil
    }

    /// `*`, or `scheme://host[:port]` with no path: what a browser sends as `Origin`.
    static func originProblem(_ origin: String) -> String? {
        if origin == "*" { return nil }
        for scheme in ["http://", "https://"] where origin.hasPrefix(scheme) {
            let rest = origin.dropFirst(scheme.count)
            if !rest.isEmpty, !rest.contains("/"), !rest.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7F }) {
                return nil
            }
        }
        return "must be * or an origin like https://app.example.com (scheme, host, optional port; no path), got "
            + JSON.quoted(origin)
    }
}
