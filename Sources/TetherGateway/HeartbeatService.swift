import Hummingbird
import NIOCore
import ServiceLifecycle

/// Ticks the tailer until shutdown: one slice of the watched executions every tenth of the heartbeat interval, so
/// that each gets its heartbeat every interval and the work is spread over it.
struct HeartbeatService: Service {
    let tailer: Tailer
    let interval: TimeAmount
    static let slices = 10

    func run() async throws {
        let duration = Duration.nanoseconds(interval.nanoseconds / Int64(Self.slices))
        // Graceful shutdown cancels the sleep: the service returns at once rather than after a tick.
        try? await cancelWhenGracefulShutdown {
            var slice = 0
            while !Task.isCancelled {
                try await Task.sleep(for: duration)
                tailer.tick(slice: slice, of: Self.slices)
                slice = (slice + 1) % Self.slices
            }
        }
    }
}
