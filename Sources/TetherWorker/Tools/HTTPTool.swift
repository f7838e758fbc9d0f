import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TetherCore

/// A tool that is one HTTP endpoint of the user's own service (`tools.http` in the configuration).
///
/// A call POSTs its JSON arguments with the configured headers, the allowed forwarded headers (the configured ones
/// win), and `Idempotency-Key: <executionId>:<toolCallId>`, the same on every attempt, so the service can tell a
/// rerun from a new call. A 2xx JSON answer is the output (an empty one is `null`); anything else, a non-2xx
/// status, a body that is not JSON, a timeout or a connection error, is a failure the model is told about in words.
public struct HTTPTool: AgentTool {
    /// The tool as configured.
    public let definition: HTTPToolDefinition
    /// Its name, description, schema and approval policy.
    public let descriptor: ToolDescriptor
    /// The configured timeout.
    public let timeout: Duration
    let client: HTTPClient

    /// Most bytes of an answer read; a larger one is a failure.
    static let answerLimit = 1 << 20
    /// Most characters of a failed answer's body quoted to the model.
    static let excerptLength = 300

    /// Makes the tool; calls go through `client` (the process's shared one by default).
    public init(_ definition: HTTPToolDefinition, client: HTTPClient = .shared) {
        self.definition = definition
        self.descriptor = ToolDescriptor(
            name: definition.name, description: definition.description, inputSchema: definition.inputSchema,
            needsApproval: definition.needsApproval)
        self.timeout = .milliseconds(Int64(definition.timeoutSeconds * 1000))
        self.client = client
    }

    /// The request of one call.
    func request(_ input: JSON, context: ToolContext) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: definition.url)
        request.method = .POST
        for name in definition.forwardHeaders {
            if let value = context.forwardedHeader(name) { request.headers.replaceOrAdd(name: name, value: value) }
        }
        for (name, value) in definition.headers.sorted(by: { $0.key < $1.key }) {
            request.headers.replaceOrAdd(name: name, value: value)
        }
        request.headers.replaceOrAdd(name: "Content-Type", value: "application/json")
        request.headers.replaceOrAdd(name: "Accept", value: "application/json")
        request.headers.replaceOrAdd(name: "Idempotency-Key", value: context.idempotencyKey)
        request.body = .bytes(ByteBuffer(string: input.rendered))
        return request
    }

    /// POSTs the call and maps the answer.
    public func run(_ input: JSON, context: ToolContext) async -> ToolOutcome {
        let name = definition.name
        let seconds = Self.seconds(timeout)
        let limit = min(timeout, max(.zero, context.deadline - .now))
        let request = request(input, context: context)
        let client = self.client
        do {
            // The whole exchange, body included, within the limit: the client's deadline covers only the head. It
            // fires first, so that a server that cannot be reached (the client tries to connect again until its
            // deadline) is reported as such, with the last connection error.
            let answer = try await Self.within(limit + .milliseconds(250)) {
                () async throws -> (HTTPResponseStatus, String) in
                let response = try await client.execute(
                    request, deadline: .now() + .nanoseconds(Self.nanoseconds(limit)))
                let body = try await response.body.collect(upTo: Self.answerLimit)
                return (response.status, String(buffer: body))
            }
            guard let (status, text) = answer else { return .failure("\(name) did not answer within \(seconds) s.") }
            guard (200..<300).contains(status.code) else {
                return .failure("\(name) answered HTTP \(status.code) \(status.reasonPhrase)" + Self.excerpt(text))
            }
            if text.allSatisfy(\.isWhitespace) { return .output(.null) }
            do {
                return .output(try JSON.parse(Array(text.utf8)))
            } catch {
                return .failure("\(name) answered with a body that is not JSON (\(error.reason))" + Self.excerpt(text))
            }
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            return .failure("\(name) did not answer within \(seconds) s.")
        } catch is NIOTooManyBytesError {
            return .failure("\(name) answered with more than \(Self.answerLimit / 1024) KiB.")
        } catch {
            if Task.isCancelled { return .failure("\(name) was interrupted.") }
            context.logger.warning("tool \(name) (\(context.toolCallID)) could not be reached: \(error)")
            return .failure("\(name) could not be reached (\(Self.describe(error))).")
        }
    }

    /// `body`'s value, or `nil` when it takes longer than `limit` (it is then cancelled).
    static func within<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws
        -> T?
    {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }

    /// A short reason for a connection failure, for the model: no Swift type names.
    static func describe(_ error: any Error) -> String {
        let text = String(describing: error).lowercased()
        if text.contains("refused") { return "connection refused" }
        if text.contains("resolve") || text.contains("lookup") { return "the host name does not resolve" }
        if text.contains("tls") || text.contains("ssl") || text.contains("certificate") { return "TLS failed" }
        if text.contains("closed") || text.contains("eof") { return "the connection closed" }
        return "connection failed"
    }

    private static func excerpt(_ text: String) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty { return "." }
        let cut = trimmed.count > excerptLength ? String(trimmed.prefix(excerptLength)) + "…" : trimmed
        return ": " + cut
    }

    static func seconds(_ duration: Duration) -> String {
        let value = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return value == value.rounded() ? String(Int(value)) : String(value)
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }
}
