import Hummingbird

/// Handles each request (middleware and route) in a task of its own, then hands its response back to the
/// connection's task, which writes it.
///
/// A task's allocator keeps every slab it grew until the task ends. Handled in the connection's task, a request's
/// async frames (the middleware chain, the create route, the Redis calls) grew that task by about 34 KiB, kept for
/// as long as the connection lived; an SSE stream writes its body from that task for minutes or hours. In a task of
/// its own the request's frames go when it returns, and the stream runs on the connection task's shallow frames.
/// Cancelling the connection's task cancels the request's.
struct RequestTaskResponder<Inner: HTTPResponder>: HTTPResponder where Inner.Context: Sendable {
    let inner: Inner

    func respond(to request: Request, context: Inner.Context) async throws -> Response {
        let task = Task { try await inner.respond(to: request, context: context) }
        return try await withTaskCancellationHandler {
            try await task.value
        } onCancel: {
            task.cancel()
        }
    }
}
