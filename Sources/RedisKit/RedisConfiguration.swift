import NIOCore
import NIOPosix

/// Where and how to connect to Redis, and the limits of a ``RedisClient``.
public struct RedisConfiguration: Sendable {
    /// Where the server listens.
    public enum Endpoint: Sendable, Hashable, CustomStringConvertible {
        /// A TCP host and port.
        case tcp(host: String, port: Int)
        /// A Unix domain socket.
        case unix(path: String)

        /// `host:port` or the socket path.
        public var description: String {
            switch self {
            case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .unix(let path): return "unix://\(path)"
            }
        }
    }

    /// Where the server listens.
    public var endpoint: Endpoint
    /// The ACL user for `AUTH user password`; `nil` means `AUTH password` (the `default` user).
    public var username: String?
    /// The password; `nil` means no `AUTH`.
    public var password: String?
    /// The database to `SELECT` after connecting (0 sends nothing).
    public var database: Int
    /// The name given with `CLIENT SETNAME`, shown by `CLIENT LIST`; `nil` sends nothing.
    public var clientName: String?
    /// How long a connect (TCP plus `AUTH`/`SELECT`) may take.
    public var connectTimeout: TimeAmount
    /// How long an ordinary command may wait for its reply. Blocking commands have no command timeout: their
    /// own `BLOCK`/timeout argument bounds them, and cancelling the waiting task frees them.
    public var commandTimeout: TimeAmount
    /// The most connections the pool for ordinary commands opens.
    public var poolSize: Int
    /// The first wait before reconnecting after Redis went away; doubles on each failure.
    public var reconnectBackoffInitial: TimeAmount
    /// The longest wait between reconnect attempts.
    public var reconnectBackoffMax: TimeAmount
    /// The event loops the connections run on.
    public var eventLoopGroup: any EventLoopGroup
    /// Whether each connection sends `READONLY` after connecting, so that a cluster replica serves reads of its
    /// master's slots (instead of redirecting them with `MOVED`). Writes sent on such a connection to a replica fail.
    public var readOnly: Bool

    /// A configuration for `endpoint` with the defaults: 5 s connect timeout, 10 s command timeout, a pool of 8.
    public init(endpoint: Endpoint, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.endpoint = endpoint
        self.username = nil
        self.password = nil
        self.database = 0
        self.clientName = nil
        self.connectTimeout = .seconds(5)
        self.commandTimeout = .seconds(10)
        self.poolSize = 8
        self.reconnectBackoffInitial = .milliseconds(50)
        // Short: after an outage, work goes on within a fraction of a second of Redis coming back (an attempt to a
        // server that refuses connections costs next to nothing).
        self.reconnectBackoffMax = .milliseconds(250)
        self.eventLoopGroup = eventLoopGroup
        self.readOnly = false
    }

    /// Parses `redis://[user[:password]@]host[:port][/db]` or `unix:///path/to/socket[?db=N&password=P&user=U]`.
    ///
    /// User and password may be percent-encoded. A user with no password (`redis://secret@host`) is taken as the
    /// password, as redis-cli does. An IPv6 host goes in brackets: `redis://[::1]:6379`.
    public init(url: String, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton)
        throws(RedisError)
    {
        func invalid(_ why: String) -> RedisError {
            RedisError(.invalidURL, "invalid Redis URL \(Self.redacted(url)): \(why)")
        }

        if url.hasPrefix("unix://") {
            var rest = Substring(url.dropFirst("unix://".count))
            var query: Substring = ""
            if let q = rest.firstIndex(of: "?") {
                query = rest[rest.index(after: q)...]
                rest = rest[..<q]
            }
            guard rest.hasPrefix("/"), rest.count > 1 else { throw invalid("expected unix:///absolute/path") }
            self.init(endpoint: .unix(path: String(rest)), eventLoopGroup: eventLoopGroup)
            for pair in query.split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else { throw invalid("bad query item \(pair)") }
                let value = try Self.percentDecoded(parts[1], url: url)
                switch parts[0] {
                case "db":
                    guard let db = Int(value), db >= 0 else { throw invalid("db must be a number") }
                    database = db
                case "password": password = value
                case "user", "username": username = value
                default: throw invalid("unknown query item \(parts[0])")
                }
            }
            return
        }

        guard url.hasPrefix("redis://") else { throw invalid("expected redis:// or unix://") }
        var rest = Substring(url.dropFirst("redis://".count))
        var user: String?
        var pass: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let u = credentials[..<colon]
                user = u.isEmpty ? nil : try Self.percentDecoded(u, url: url)
                pass = try Self.percentDecoded(credentials[credentials.index(after: colon)...], url: url)
            } else if !credentials.isEmpty {
                pass = try Self.percentDecoded(credentials, url: url)
            }
        }
        var hostPort = rest
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            hostPort = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        }
        var host: Substring
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw invalid("unclosed [ in host") }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw invalid("unexpected text after ]") }
                portText = after.dropFirst()
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = hostPort
        }
        if host.isEmpty { host = "127.0.0.1" }
        var port = 6379
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else { throw invalid("port must be 1-65535") }
            port = p
        }
        self.init(endpoint: .tcp(host: String(host), port: port), eventLoopGroup: eventLoopGroup)
        username = user
        password = pass
        if !path.isEmpty {
            guard let db = Int(path), db >= 0 else { throw invalid("database must be a number, got \(path)") }
            database = db
        }
    }

    /// The URL with any password replaced by `***`, safe for logs.
    public static func redacted(_ url: String) -> String {
        let marker = Array("://".utf8)
        let bytes = Array(url.utf8)
        guard
            let schemeEnd = (0...max(0, bytes.count - marker.count)).first(where: {
                bytes[$0..<min($0 + 3, bytes.count)].elementsEqual(marker)
            }),
            let at = bytes.lastIndex(of: UInt8(ascii: "@")), at > schemeEnd + 3
        else { return url }
        let start = schemeEnd + 3
        let credentials = bytes[start..<at]
        let head: ArraySlice<UInt8>
        if let colon = credentials.firstIndex(of: UInt8(ascii: ":")) {
            head = bytes[..<colon] + Array(":***".utf8)
        } else {
            head = bytes[..<start] + Array("***".utf8)
        }
        return String(decoding: head + bytes[at...], as: UTF8.self)
    }

    private static func percentDecoded(_ text: Substring, url: String) throws(RedisError) -> String {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw RedisError(.invalidURL, "invalid Redis URL \(redacted(url)): bad percent-encoding")
            }
            bytes.append(high << 4 | low)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
