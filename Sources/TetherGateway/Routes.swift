import Hummingbird

/// One route of the gateway: the method, the path (`:name` matches one segment), whether it needs an API key, and
/// its handler. The gateway's list of routes both registers them and answers `405` with `Allow` for a known path
/// asked with another method.
struct Route: Sendable {
    /// Who may call a route.
    enum Access: Sendable {
        /// Anyone.
        case open
        /// A request with an API key.
        case key
        /// A request with an API key, or a stream token for the execution in its path (``StreamTokens``).
        case keyOrStreamToken
    }

    let method: HTTPRequest.Method
    let path: String
    let access: Access
    let handler: @Sendable (Request, GatewayRequestContext) async throws -> Response

    init(
        _ method: HTTPRequest.Method, _ path: String, access: Access = .key,
        _ handler: @escaping @Sendable (Request, GatewayRequestContext) async throws -> Response
    ) {
        self.method = method
        self.path = path
        self.access = access
        self.handler = handler
    }
}

/// The methods each path pattern answers, for `405 Method Not Allowed` and its `Allow` header.
struct RouteTable: Sendable {
    private let patterns: [(segments: [Substring], method: HTTPRequest.Method)]

    init(_ routes: [Route]) {
        patterns = routes.map { (Self.segments($0.path), $0.method) }
    }

    /// The methods routed for `path`, in the order the routes were listed; empty when no route has that path.
    func methods(for path: String) -> [HTTPRequest.Method] {
        let asked = Self.segments(path)
        var methods: [HTTPRequest.Method] = []
        for pattern in patterns where Self.matches(pattern.segments, asked) && !methods.contains(pattern.method) {
            methods.append(pattern.method)
        }
        // The router answers HEAD wherever it answers GET.
        if methods.contains(.get) { methods.append(.head) }
        return methods
    }

    private static func segments(_ path: String) -> [Substring] {
        path.split(separator: "/", omittingEmptySubsequences: true)
    }

    private static func matches(_ pattern: [Substring], _ path: [Substring]) -> Bool {
        pattern.count == path.count && zip(pattern, path).allSatisfy { $0.hasPrefix(":") || $0 == $1 }
    }
}
