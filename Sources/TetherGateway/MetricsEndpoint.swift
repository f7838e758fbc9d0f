import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import TetherCore

/// Prometheus metrics: the process's swift-metrics, in the Prometheus text format at `GET /metrics` (on the
/// gateway's port, and on `workers.metricsPort` for a worker process).
public enum MetricsEndpoint {
    /// Bootstraps swift-metrics with a Prometheus registry (once per process: before any metric is made) and
    /// returns it. Names with dots (Hummingbird's `http.server.request.duration`) are written with underscores.
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = TetherMetrics.durationBuckets
        factory.nameAndLabelSanitizer = { name, labels in
            (underscored(name), labels.map { (underscored($0.0), $0.1) })
        }
        MetricsSystem.bootstrap(factory)
        return registry
    }

    private static func underscored(_ name: String) -> String {
        String(name.map { $0 == "." || $0 == "-" ? "_" : $0 })
    }

    /// The registry's metrics as a response.
    static func response(_ registry: PrometheusCollectorRegistry) -> Response {
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        return Response(
            status: .ok,
            headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// A listener that serves only `GET /metrics` and `GET /healthz`, for a process with no gateway.
    public static func application(registry: PrometheusCollectorRegistry, host: String, port: Int)
        -> some ApplicationProtocol
    {
        let router = Router()
        router.get("metrics") { _, _ in response(registry) }
        router.get("healthz") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: "{\"status\":\"ok\"}")))
        }
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "tether-worker"),
            logger: Logger(label: "tether.metrics"))
    }
}
