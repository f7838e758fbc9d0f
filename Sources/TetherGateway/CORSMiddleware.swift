import HTTPTypes
import Hummingbird

/// CORS for browsers: allowed origins from the configuration (a list, which Hummingbird's `CORSMiddleware` does not
/// take); preflight allows the request headers the API reads, and scripts may read the response headers it sets.
struct CORSMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowedOrigins: [String]

    private var allowsAny: Bool { allowedOrigins.contains("*") }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        guard let origin = request.headers[.origin] else { return try await next(request, context) }
        let allowed = allowsAny || allowedOrigins.contains(origin)
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            guard allowed else { return Response(status: .forbidden) }
            var headers: HTTPFields = [:]
            headers[.accessControlAllowOrigin] = allowsAny ? "*" : origin
            headers[.accessControlAllowMethods] = "GET, POST, OPTIONS"
            headers[.accessControlAllowHeaders] =
                "Authorization, Content-Type, Last-Event-ID, Idempotency-Key, x-stream-start-index, x-tether-stream-format"
            headers[.accessControlMaxAge] = "600"
            if !allowsAny { headers[.vary] = "Origin" }
            return Response(status: .noContent, headers: headers)
        }
        var response = try await next(request, context)
        if allowed {
            response.headers[.accessControlAllowOrigin] = allowsAny ? "*" : origin
            response.headers[.accessControlExposeHeaders] =
                "x-workflow-run-id, x-workflow-stream-tail-index, x-vercel-ai-ui-message-stream, Idempotent-Replayed, Location"
            if !allowsAny { response.headers[.vary] = "Origin" }
        }
        return response
    }
}
