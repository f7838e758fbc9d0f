import Synchronization

/// What one process's store appended since it started, readable (swift-metrics counters are not): a worker puts them
/// in its status (``WorkerStatus``), which `tether top` turns into rates.
public final class StoreCounters: Sendable {
    /// Events appended.
    public let events = Atomic<Int>(0)
    /// Executions finished, by their final status.
    public let completed = Atomic<Int>(0)
    /// See ``completed``.
    public let failed = Atomic<Int>(0)
    /// See ``completed``.
    public let cancelled = Atomic<Int>(0)

    /// Makes zeroed counters.
    public init() {}

    /// Counts `count` appended events, `finished` being the final status one of them set, if any; and records
    /// them in the metrics.
    func appended(_ count: Int, finished: [String] = []) {
        events.add(count, ordering: .relaxed)
        TetherMetrics.eventsAppended.increment(by: Int64(count))
        for status in finished {
            switch status {
            case "completed": completed.add(1, ordering: .relaxed)
            case "failed": failed.add(1, ordering: .relaxed)
            case "cancelled": cancelled.add(1, ordering: .relaxed)
            default: break
            }
            TetherMetrics.executionsFinished(status).increment()
        }
    }
}
