import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import TetherCore

/// The HTTP side of a provider: POSTs a JSON body and hands the SSE events of the streamed answer over as they
/// arrive (an event may be cut anywhere by the network, inside a JSON string or a UTF-8 sequence: the parser keeps
/// the bytes until the line is whole). Failures become ``ModelError``s that say what a person needs to know, with
/// the API key taken out.
struct ProviderHTTP: Sendable {
    /// The client (the process's shared one).
    let client: HTTPClient
    /// The API key, when there is one (only to keep it out of messages).
    let apiKey: String?
    /// Seconds the whole request may take, streaming included.
    let timeout: Double

    /// Most bytes of an error body read.
    static let errorBodyLimit = 64 * 1024

    /// POSTs `body` to `url` and calls `onEvent` for each SSE event of the answer, in order, until the stream ends.
    /// `errorMessage` pulls the provider's own message out of an error body.
    func stream(
        url: String, headers: [(String, String)], body: JSON, errorMessage: @escaping @Sendable (JSON) -> String?,
        onEvent: (SSEEvent) async throws -> Void
    ) async throws {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.headers.replaceOrAdd(name: "Content-Type", value: "application/json")
        request.headers.replaceOrAdd(name: "Accept", value: "text/event-stream")
        request.body = .bytes(ByteBuffer(string: body.rendered))
        let deadline = NIODeadline.now() + .milliseconds(Int64(timeout * 1000))
        var receivedAny = false
        do {
            let response = try await client.execute(request, deadline: deadline)
            guard response.status == .ok else {
                let bytes = try? await response.body.collect(upTo: Self.errorBodyLimit)
                throw failure(status: response.status, headers: response.headers, body: bytes, errorMessage)
            }
            var parser = SSEParser()
            for try await chunk in response.body {
                receivedAny = true
                for event in parser.feed(chunk.readableBytesView) { try await onEvent(event) }
            }
        } catch let error as ModelError {
            throw redacted(error)
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            throw ModelError(
                code: "model_timeout", message: "The model did not finish within \(Int(timeout)) s.", retryable: true)
        } catch let error as HTTPClientError where error == .cancelled {
            throw CancellationError()
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw ModelError(
                code: "model_unavailable",
                message: receivedAny
                    ? "The connection to the model provider was lost in the middle of its answer."
                    : "The model provider could not be reached.", retryable: true)
        }
    }

    /// Streams one turn: POSTs `body`, turns each SSE event into model events with `parse`, and hands them to `sink`,
    /// reading on once a chunk's events are stored (backpressure).
    func streamTurn(
        url: String, headers: [(String, String)], body: JSON, errorMessage: @escaping @Sendable (JSON) -> String?,
        into sink: any TurnSink, parse: (SSEEvent) throws -> [ModelEvent]
    ) async throws {
        try await stream(
            url: url, headers: headers, body: body, errorMessage: errorMessage,
            onEvent: { event in
                var stored: EventLoopFuture<Void>?
                for modelEvent in try parse(event) { stored = sink.emit(modelEvent) }
                try await stored?.get()
            })
    }

    /// The error of a non-200 answer: retryable for 408, 409, 429 and 5xx (with `Retry-After`), not for the rest.
    func failure(
        status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer?, _ errorMessage: (JSON) -> String?
    ) -> ModelError {
        let parsed = body.flatMap { try? JSON.parse($0.readableBytesView) }
        let upstream = parsed.flatMap(errorMessage) ?? body.map { String(buffer: $0).prefix(500) }.map(String.init)
        let said = upstream.map { ": \($0)" } ?? ""
        let message = "The model provider answered \(status.code)\(said)"
        let retryAfter = headers.first(name: "retry-after").flatMap(Self.retryAfter)
        switch status.code {
        case 429:
            return ModelError(code: "model_rate_limited", message: message, retryable: true, retryAfter: retryAfter)
        case 408, 409, 500...599:
            return ModelError(code: "model_unavailable", message: message, retryable: true, retryAfter: retryAfter)
        case 401, 403:
            return ModelError(code: "model_auth_error", message: message)
        default:
            return ModelError(code: "model_error", message: message)
        }
    }

    /// `Retry-After` as seconds or as an HTTP date.
    static func retryAfter(_ value: String) -> Duration? {
        if let seconds = Double(value.trimmingCharacters(in: .whitespaces)), seconds >= 0 {
            return .milliseconds(Int64(seconds * 1000))
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return .milliseconds(Int64(max(0, date.timeIntervalSinceNow) * 1000))
    }

    /// The error with the API key taken out of its message.
    func redacted(_ error: ModelError) -> ModelError {
        guard let apiKey, apiKey.count >= 4, error.message.contains(apiKey) else { return error }
        var error = error
        error.message = error.message.replacingOccurrences(of: apiKey, with: "[redacted]")
        return error
    }

    /// The error a provider reports inside its stream.
    func streamError(_ message: String?, retryable: Bool) -> ModelError {
        redacted(
            ModelError(
                code: retryable ? "model_unavailable" : "model_error",
                message: "The model provider reported an error" + (message.map { ": \($0)" } ?? "."),
                retryable: retryable))
    }
}
