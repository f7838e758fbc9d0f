import Hummingbird
import RedisKit
import TetherCore

/// An error answered to the client as `{"error": "<human readable>", "code": "<machine_code>"}`.
public struct APIError: Error, Sendable {
    /// The HTTP status.
    public var status: HTTPResponse.Status
    /// The machine-readable code.
    public var code: String
    /// The human-readable message.
    public var message: String
    /// Extra headers (`WWW-Authenticate` on 401).
    public var headers: HTTPFields

    /// Makes an error.
    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    public static func unauthorized(_ message: String) -> APIError {
        APIError(.unauthorized, "unauthorized", message, headers: [.wwwAuthenticate: "Bearer realm=\"tether\""])
    }

    /// 404 for an execution the key may not see, or that does not exist (the two are indistinguishable).
    public static let executionNotFound = APIError(.notFound, "execution_not_found", "execution not found")

    /// 400 with a precise message.
    public static func badRequest(_ code: String, _ message: String) -> APIError {
        APIError(.badRequest, code, message)
    }

    /// The JSON response.
    public var response: Response {
        var body = "{\"error\":"
        JSON.appendQuoted(message, to: &body)
        body += ",\"code\":"
        JSON.appendQuoted(code, to: &body)
        body += "}"
        var headers = self.headers
        headers[.contentType] = "application/json"
        headers[.cacheControl] = "no-store"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// Turns every error into the documented JSON body: ``APIError`` as it is, Hummingbird's `HTTPError` (unknown
/// route, body too large...) with a code for its status, Redis outages as 503, anything else as 500.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    /// The routes, to tell a path asked with the wrong method (405 with `Allow`) from an unknown path (404).
    let routes: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response)
        async throws -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return error.response
        } catch let error as HTTPError {
            let code: String
            let message: String
            var headers = error.headers
            let allowed = error.status == .notFound ? routes.methods(for: request.uri.path) : []
            switch error.status {
            case .notFound where !allowed.isEmpty:
                headers[.allow] = allowed.map(\.rawValue).joined(separator: ", ")
                return APIError(
                    .methodNotAllowed, "method_not_allowed",
                    "method \(request.method) not allowed on \(request.uri.path); allowed: \(headers[.allow]!)",
                    headers: headers
                ).response
            case .notFound:
                code = "route_not_found"
                message = "no route for \(request.method) \(request.uri.path)"
            case .contentTooLarge:
                code = "payload_too_large"
                message = "request body too large"
            case .methodNotAllowed:
                code = "method_not_allowed"
                message = "method \(request.method) not allowed on \(request.uri.path)"
            default:
                code = "http_\(error.status.code)"
                message = error.body ?? error.status.reasonPhrase
            }
            return APIError(error.status, code, message, headers: headers).response
        } catch let error as RedisError
            where error.code == .unavailable || error.code == .timeout || error.code == .connectionClosed
        {
            context.logger.error("Redis unavailable: \(error)")
            return APIError(.serviceUnavailable, "unavailable", "storage temporarily unavailable").response
        } catch {
            context.logger.error("internal error: \(error)")
            return APIError(.internalServerError, "internal_error", "internal error").response
        }
    }
}
