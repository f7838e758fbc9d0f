import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Prometheus
import RedisKit
import ServiceLifecycle
import TetherCore

/// The HTTP gateway: the four execution endpoints, health checks and the OpenAPI document.
///
/// Stateless: any number of gateways can serve the same Redis. Live tailing goes through one ``Tailer`` per
/// gateway, so Redis connections are bounded by the pool size plus one pub/sub connection, whatever the number
/// of clients.
public final class Gateway: Sendable {
    /// The configuration.
    public let config: TetherConfig
    /// The execution store.
    public let store: ExecutionStore
    /// The store streams are read from: on a cluster, through replicas (``RedisClientProtocol/replicaReads``), so that
    /// no client is sent an event a failover could still lose; on one server, ``store``.
    let deliveryStore: ExecutionStore
    /// Bearer tokens to principals, with the key cache.
    public let authenticator: Authenticator
    /// Live tailing.
    public let tailer: Tailer
    let logger: Logger
    /// What `GET /metrics` serves (``MetricsEndpoint/bootstrap()``'s registry; an empty one when metrics were not
    /// bootstrapped).
    let metrics: PrometheusCollectorRegistry

    /// Makes a gateway on `redis`.
    public init(
        config: TetherConfig, redis: any RedisClientProtocol, logger: Logger = Logger(label: "tether.gateway"),
        metrics: PrometheusCollectorRegistry = PrometheusCollectorRegistry()
    ) {
        self.config = config
        self.metrics = metrics
        self.store = ExecutionStore(redis: redis, config: config)
        self.deliveryStore = redis.isCluster ? ExecutionStore(redis: redis.replicaReads, config: config) : store
        self.authenticator = Authenticator(
            apiKeys: APIKeys(redis: redis, keys: store.keys, configured: config.apiKeys),
            ttl: .milliseconds(Int64(config.http.keyCacheSeconds * 1000)), capacity: config.http.keyCacheEntries)
        self.tailer = Tailer(
            store: deliveryStore, readsReplicas: redis.isCluster, clientQueue: config.http.clientQueueLength,
            logger: logger)
        self.logger = logger
    }

    /// Every route, once: registered by ``makeRouter()`` and listed in `Allow` by the 405 answers.
    var routes: [Route] {
        [
            Route(.get, "healthz", access: .open) { _, _ in Self.json(.ok, "{\"status\":\"ok\"}") },
            Route(.get, "readyz", access: .open) { _, context in try await self.ready(context) },
            Route(.get, "metrics", access: .open) { _, _ in MetricsEndpoint.response(self.metrics) },
            Route(.get, "run/api/openapi.json", access: .open) { _, _ in Self.openAPIResponse },
            Route(.get, "", access: .open) { _, _ in Self.playgroundPage },
            Route(.get, "playground/:file", access: .open) { _, context in try Self.playgroundFile(context) },
            Route(.post, "run/api/executions") { request, context in try await self.create(request, context) },
            Route(.get, "run/api/executions/:executionId") { request, context in
                try await self.status(request, context)
            },
            Route(.post, "run/api/executions/:executionId/approvals/:toolCallId") { request, context in
                try await self.approve(request, context)
            },
            Route(.post, "run/api/executions/:executionId/cancel") { request, context in
                try await self.cancel(request, context)
            },
            Route(.get, "run/api/executions/:executionId/stream", access: .keyOrStreamToken) { request, context in
                try await self.reconnect(request, context)
            },
            Route(.post, "run/api/executions/:executionId/stream-token") { request, context in
                try await self.streamToken(request, context)
            },
        ]
    }

    /// The router with every route and middleware.
    public func makeRouter() -> Router<GatewayRequestContext> {
        let routes = self.routes
        // HEAD answers every GET route, with its headers and no body (RFC 9110).
        let router = Router(context: GatewayRequestContext.self, options: .autoGenerateHeadEndpoints)
        // CORS outermost, so that error responses carry its headers too. Middleware applies to the routes added
        // after it.
        router.add(middleware: CORSMiddleware(allowedOrigins: config.http.corsAllowedOrigins))
        router.add(middleware: ErrorMiddleware(routes: RouteTable(routes)))
        router.add(middleware: MetricsMiddleware())
        let withKey = router.group().add(middleware: AuthenticationMiddleware(authenticator: authenticator))
        let withKeyOrToken = router.group().add(
            middleware: AuthenticationMiddleware(authenticator: authenticator, acceptsStreamToken: true))
        for route in routes {
            switch route.access {
            case .open: router.on(RouterPath(route.path), method: route.method, use: route.handler)
            case .key: withKey.on(RouterPath(route.path), method: route.method, use: route.handler)
            case .keyOrStreamToken: withKeyOrToken.on(RouterPath(route.path), method: route.method, use: route.handler)
            }
        }
        return router
    }

    /// A service that ticks the tailer every heartbeat interval (heartbeat comments and the re-read safety net).
    public var heartbeatService: some Service {
        HeartbeatService(tailer: tailer, interval: .milliseconds(Int64(config.http.heartbeatSeconds * 1000)))
    }

    private func ready(_ context: GatewayRequestContext) async throws -> Response {
        do {
            try await store.redis.send("PING")
            return Self.json(.ok, "{\"status\":\"ready\",\"redis\":\"ok\"}")
        } catch {
            context.logger.warning("readiness check: Redis does not answer: \(error)")
            return APIError(.serviceUnavailable, "unavailable", "Redis is not reachable").response
        }
    }

    /// The OpenAPI document, served as the package resource holds it.
    static let openAPIResponse = Response(
        status: .ok, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(bytes: PackageResources.openapi_json)))

    static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

extension Gateway {
    /// The connection deadlines of the configuration.
    var connectionLimits: ConnectionTimeouts.Limits {
        func duration(_ seconds: Double) -> Duration { .milliseconds(Int64(seconds * 1000)) }
        return ConnectionTimeouts.Limits(
            header: duration(config.http.headerTimeoutSeconds), body: duration(config.http.bodyTimeoutSeconds),
            idle: duration(config.http.idleTimeoutSeconds))
    }

    /// The Hummingbird application serving this gateway on the configured host and port, running `services`
    /// (workers, say) beside it; graceful shutdown ends open streams cleanly.
    public func makeApplication(
        services: [any Service] = [], onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        Application(
            responder: RequestTaskResponder(inner: makeRouter().buildResponder()),
            server: .guardedHTTP1(limits: connectionLimits),
            configuration: ApplicationConfiguration(
                address: .hostname(config.http.host, port: config.http.port), serverName: "tether",
                backlog: config.http.backlog),
            services: [heartbeatService] + services,
            onServerRunning: onServerRunning,
            logger: logger)
    }
}
