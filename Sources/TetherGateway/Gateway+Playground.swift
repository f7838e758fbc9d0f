import HTTPTypes
import Hummingbird
import NIOCore

/// The web playground at `/`: static files that are package resources (no build step, nothing from a CDN).
extension Gateway {
    /// What the playground's files may load and where they may connect: this origin only.
    static let playgroundHeaders: HTTPFields = [
        .cacheControl: "no-cache", HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        .contentSecurityPolicy: "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    ]

    /// The playground's files by name, with their content types.
    static let playgroundFiles: [String: (type: String, bytes: [UInt8])] = [
        "playground.js": ("text/javascript; charset=utf-8", PackageResources.playground_js),
        "playground.css": ("text/css; charset=utf-8", PackageResources.playground_css),
    ]

    static let playgroundPage = playgroundResponse("text/html; charset=utf-8", PackageResources.index_html)

    /// `GET /playground/<file>`; `404 route_not_found` for any other name.
    static func playgroundFile(_ context: GatewayRequestContext) throws -> Response {
        guard let file = context.parameters.get("file"), let found = playgroundFiles[file] else {
            throw APIError(.notFound, "route_not_found", "no such playground file")
        }
        return playgroundResponse(found.type, found.bytes)
    }

    private static func playgroundResponse(_ type: String, _ bytes: [UInt8]) -> Response {
        var headers = playgroundHeaders
        headers[.contentType] = type
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}
