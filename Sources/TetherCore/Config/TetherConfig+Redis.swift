import Logging
import RedisKit

extension TetherConfig.Redis {
    /// The seed nodes' URLs when this is a cluster (``cluster``, or the hosts of a `redis+cluster://` ``url``), else
    /// `nil`.
    public var clusterSeeds: [String]? {
        if !cluster.isEmpty { return cluster }
        return (try? Self.clusterSeeds(url)) ?? nil
    }

    /// The key schema: sharded on a cluster (16 shards unless ``shards`` says), and on one server when ``shards`` is
    /// set.
    public var keys: Keys {
        Keys(prefix: prefix, shards: clusterSeeds != nil && shards == 0 ? 16 : shards)
    }

    /// A client for this configuration: of the cluster, or of the one server; named `name` in `CLIENT LIST`.
    public func makeClient(name: String, logger: Logger = Logger(label: "tether.redis")) throws
        -> any RedisClientProtocol
    {
        func configuration(_ url: String) throws -> RedisConfiguration {
            var configuration = try RedisConfiguration(url: url)
            configuration.poolSize = poolSize
            configuration.commandTimeout = .milliseconds(Int64(commandTimeoutMilliseconds))
            configuration.clientName = name
            return configuration
        }
        if let seeds = clusterSeeds {
            return RedisClusterClient(seeds: try seeds.map(configuration), logger: logger)
        }
        return RedisClient(configuration: try configuration(url), logger: logger)
    }

    /// The seeds of a `redis+cluster://[user[:password]@]host:port[,host:port…]` URL as `redis://` URLs (credentials
    /// on each); `nil` for another scheme.
    static func clusterSeeds(_ url: String) throws(RedisError) -> [String]? {
        let scheme = "redis+cluster://"
        guard url.hasPrefix(scheme) else { return nil }
        var rest = Substring(url.dropFirst(scheme.count))
        var credentials = ""
        if let at = rest.lastIndex(of: "@") {
            credentials = String(rest[...at])
            rest = rest[rest.index(after: at)...]
        }
        let hosts = rest.split(separator: ",").map { $0.trimmingPrefix("/") }
        guard !hosts.isEmpty, !hosts.contains(where: { $0.isEmpty || $0.contains("/") }) else {
            throw RedisError(.invalidURL, "a redis+cluster:// URL lists host:port pairs, comma-separated")
        }
        return hosts.map { "redis://" + credentials + $0 }
    }
}
