import NIOCore
import NIOPosix

/// Sleeps on a timer of a NIO event loop (the one running the caller when there is one) instead of the
/// concurrency runtime's timers, which on Linux go through Dispatch's timer thread and cost a thread switch on
/// every wake-up. Used where thousands of tasks sleep briefly and often (token pacing, lease rounds).
public enum EventLoopSleep {
    /// Suspends the task for `duration`; throws `CancellationError` when the task is cancelled first.
    public static func sleep(for duration: Duration) async throws {
        try Task.checkCancellation()
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        let scheduled = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .nanoseconds(nanoseconds)) {}
        try await withTaskCancellationHandler {
            do {
                try await scheduled.futureResult.get()
            } catch {
                throw CancellationError()
            }
        } onCancel: {
            scheduled.cancel()
        }
    }
}
