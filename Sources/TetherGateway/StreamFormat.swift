import HTTPTypes
import Hummingbird

/// The wire format of a stream, asked for by `x-tether-stream-format` on create and on reconnect (the header
/// survives `WorkflowChatTransport`'s reconnect URL), else by `?format=`.
enum StreamFormat: String, Sendable, CaseIterable {
    /// Inkeep's: OpenAI `chat.completion.chunk` objects, one frame per log entry (the default).
    case inkeep
    /// The Vercel AI SDK UI message stream (``UIMessageRenderer``).
    case uiMessage = "ui-message"

    /// The format `request` asks for (both the header and the query are checked when given; the header wins);
    /// `400 invalid_stream_format` for one Tether does not have.
    init(_ request: Request) throws {
        func parse(_ asked: String?, _ name: String) throws -> StreamFormat? {
            guard let asked else { return nil }
            guard let format = StreamFormat(rawValue: asked) else {
                throw APIError.badRequest(
                    "invalid_stream_format",
                    "\(name) must be one of \(Self.allCases.map(\.rawValue).joined(separator: ", ")), got \(asked)")
            }
            return format
        }
        let header = try parse(request.headers[.streamFormat], "x-tether-stream-format")
        let query = try parse(request.uri.queryParameters.get("format"), "format")
        self = header ?? query ?? .inkeep
    }
}
