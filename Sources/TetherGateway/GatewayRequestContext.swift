import Hummingbird
import NIOCore

/// The request context of the gateway's routes: Hummingbird's basic context plus the event loop of the request's
/// connection, so that a stream's pump runs on the loop its connection writes from (no hop per write).
public struct GatewayRequestContext: RequestContext {
    /// Hummingbird's per-request storage.
    public var coreContext: CoreRequestContextStorage
    /// The event loop of the connection the request came in on.
    public let eventLoop: any EventLoop

    /// Makes the context of one request.
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        eventLoop = source.channel.eventLoop
    }
}

/// Runs the jobs of tasks that prefer it on one event loop (`withTaskExecutorPreference`).
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        loop.execute { job.runSynchronously(on: executor) }
    }
}
