import Metrics
import Synchronization

/// Every metric Tether records, by name, through swift-metrics (`tether` bootstraps swift-prometheus; `/metrics`
/// serves the text format). docs/operations.md lists them with their labels.
public enum TetherMetrics {
    /// `tether_executions_created_total`: executions created (not idempotent replays).
    public static let executionsCreated = Counter(label: "tether_executions_created_total")
    /// `tether_executions_finished_total{status}`: executions that reached a final status.
    public static func executionsFinished(_ status: String) -> Counter {
        counter("tether_executions_finished_total", [("status", status)])
    }
    /// `tether_events_appended_total`: events appended to execution logs.
    public static let eventsAppended = Counter(label: "tether_events_appended_total")
    /// `tether_events_delivered_total`: events written to SSE clients (one per client).
    public static let eventsDelivered = Counter(label: "tether_events_delivered_total")
    /// `tether_sse_clients`: SSE streams open now.
    public static let sseClients = Meter(label: "tether_sse_clients")
    /// `tether_event_delivery_seconds`: from an event's append to its write to a live client (histogram).
    public static let deliveryLatency = Timer(label: "tether_event_delivery_seconds")
    /// `tether_worker_slots` and `tether_worker_slots_busy`: a worker process's slots, and those running an
    /// execution.
    public static let workerSlots = Meter(label: "tether_worker_slots")
    /// See ``workerSlots``.
    public static let workerSlotsBusy = Meter(label: "tether_worker_slots_busy")
    /// `tether_runs_diverged_total`: runs a worker started again from the log because the log had lost entries it
    /// appended (a Redis failover before they were replicated).
    public static let runsDiverged = Counter(label: "tether_runs_diverged_total")
    /// `tether_executions_waiting`: executions parked waiting for a human decision (all of the deployment's).
    public static let executionsWaiting = Meter(label: "tether_executions_waiting")
    /// `tether_oldest_waiting_seconds`: how long the longest-waiting of them has waited.
    public static let oldestWaiting = Meter(label: "tether_oldest_waiting_seconds")
    /// `tether_model_request_seconds{provider}`: a model turn, from request to its last chunk (histogram).
    public static func modelRequest(_ provider: String) -> Timer {
        timer("tether_model_request_seconds", [("provider", provider)])
    }
    /// `tether_model_tokens_total{provider, direction}`: tokens the providers reported (`input`, `output`).
    public static func modelTokens(_ provider: String, _ direction: String) -> Counter {
        counter("tether_model_tokens_total", [("provider", provider), ("direction", direction)])
    }
    /// `tether_model_errors_total{provider, code}`: failed model requests, by error code (`model_rate_limited`…).
    public static func modelErrors(_ provider: String, _ code: String) -> Counter {
        counter("tether_model_errors_total", [("provider", provider), ("code", code)])
    }
    /// `tether_tool_calls_total{tool, outcome}`: tool calls by outcome (`output`, `error`, `denied`, `rejected`).
    public static func toolCalls(_ tool: String, _ outcome: String) -> Counter {
        counter("tether_tool_calls_total", [("tool", tool), ("outcome", outcome)])
    }

    /// Histogram buckets per timer (the Prometheus factory's defaults start at 5 ms: too coarse for delivery).
    public static let durationBuckets: [String: [Duration]] = [
        "tether_event_delivery_seconds": [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
            .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1), .seconds(5),
        ],
        "tether_redis_command_seconds": [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(100), .seconds(1), .seconds(5),
        ],
        "tether_model_request_seconds": [
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5),
            .seconds(10), .seconds(20), .seconds(30), .seconds(60), .seconds(120),
        ],
    ]

    // Each metric is made once, after bootstrap (a metric made before it would stay a no-op): the label-free ones
    // are lazy statics (made on first use), the labelled ones are kept by label values.

    private struct Key: Hashable {
        var label: String
        var dimensions: [String]
    }

    private static let made = Mutex<[Key: any Sendable]>([:])

    private static func cached<M: Sendable>(_ label: String, _ dimensions: [(String, String)], _ make: () -> M) -> M {
        let key = Key(label: label, dimensions: dimensions.flatMap { [$0.0, $0.1] })
        return made.withLock { made in
            if let metric = made[key] as? M { return metric }
            let metric = make()
            made[key] = metric
            return metric
        }
    }

    private static func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Counter {
        cached(label, dimensions) { Counter(label: label, dimensions: dimensions) }
    }

    private static func timer(_ label: String, _ dimensions: [(String, String)] = []) -> Timer {
        cached(label, dimensions) { Timer(label: label, dimensions: dimensions) }
    }
}
