import Hummingbird
import NIOCore
import TetherCore

/// The request context of the gateway's routes: Hummingbird's basic context, the request's connection (a stream's
/// pump runs on its event loop, so no write hops threads, and watches it for the client going away), and the
/// principal that ``AuthenticationMiddleware`` resolved from the bearer token.
public struct GatewayRequestContext: RequestContext {
    /// Hummingbird's per-request storage.
    public var coreContext: CoreRequestContextStorage
    /// The connection the request came in on.
    public let channel: any Channel
    /// Who the request acts as, once authenticated.
    public var principal: Principal?

    /// Makes the context of one request.
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// The event loop of the request's connection.
    public var eventLoop: any EventLoop { channel.eventLoop }

    /// The authenticated principal (the routes that need one sit behind ``AuthenticationMiddleware``).
    func requirePrincipal() throws -> Principal {
        guard let principal else {
            throw APIError.unauthorized("missing Authorization header; send Authorization: Bearer <api key>")
        }
        return principal
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
