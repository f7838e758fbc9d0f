import Metrics
import Synchronization

/// The client's metrics, through swift-metrics: `tether_redis_command_seconds{command}` (a histogram of each
/// command's time from the call to its reply, pool wait included; blocking commands are not timed) and
/// `tether_redis_errors_total{command, kind}` (a failed command: by ``RedisError/Code``, or by the error reply's
/// prefix, `OOM`, `FENCED`…, for an error reply).
enum RedisMetrics {
    /// The timer of each command name, made once (the factory is not asked again per command).
    private static let timers = Mutex<[String: Timer]>([:])

    static func timer(_ command: String) -> Timer {
        timers.withLock { timers in
            if let timer = timers[command] { return timer }
            let timer = Timer(label: "tether_redis_command_seconds", dimensions: [("command", command)])
            timers[command] = timer
            return timer
        }
    }

    /// Records one command's outcome: its time, or its error.
    static func record(_ command: String, since start: ContinuousClock.Instant, error: (any Error)?) {
        if let error {
            let kind: String
            switch error as? RedisError {
            case let error? where error.code == .serverError:
                // Replies the client expects and handles are not errors: an unknown script is loaded and run
                // again, a consumer group that exists is there.
                let prefix = String(error.serverErrorPrefix ?? "ERR")
                if prefix == "NOSCRIPT" || prefix == "BUSYGROUP" { return }
                kind = prefix
            case let error?: kind = "\(error.code)"
            case nil: kind = error is CancellationError ? "cancelled" : "other"
            }
            Counter(label: "tether_redis_errors_total", dimensions: [("command", command), ("kind", kind)]).increment()
        } else {
            timer(command).record(duration: ContinuousClock.now - start)
        }
    }
}
