import NIOCore
import NIOHTTP1
import NIOPosix
import TetherCore

/// A TCP connection that sends bytes exactly as given and reads what comes back, for requests no HTTP client would
/// send: half-sent headers, a body that stops.
struct RawConnection {
    private let channel: any Channel

    static func open(port: Int) async throws -> RawConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel)
    }

    func send(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text))
    }

    /// Waits until the server closes the connection, up to `limit`; returns how long that took, or `nil` if the
    /// connection was still open at the limit (it is then closed).
    func closedWithin(_ limit: Duration) async throws -> Duration? {
        let start = ContinuousClock.now
        let channel = self.channel
        return try await withThrowingTaskGroup(of: Duration?.self) { group in
            group.addTask {
                try await channel.closeFuture.get()
                return ContinuousClock.now - start
            }
            group.addTask {
                // Cancelled once the server has closed; else it closes the connection itself (which ends the
                // first task too: a future's `get()` does not end on cancellation).
                try? await Task.sleep(for: limit)
                if Task.isCancelled { return .zero }
                try? await channel.close()
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            _ = try await group.next()
            // Closed by the timeout itself, whichever task noticed first.
            guard let first, first < limit else { return nil }
            return first
        }
    }

    func close() { channel.close(promise: nil) }
}

/// One HTTP/1.1 keep-alive connection on which requests are sent one after another, each response read to its end.
/// A response that does not come (the server closed the connection instead) is an error, not a retry.
final class KeepAliveConnection: @unchecked Sendable {
    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    struct ClosedWithoutResponse: Error {}

    /// Hands the response parts to a stream; the stream ends when the connection does.
    private final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart
        let continuation: AsyncStream<HTTPClientResponsePart>.Continuation

        init(_ continuation: AsyncStream<HTTPClientResponsePart>.Continuation) { self.continuation = continuation }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            continuation.yield(unwrapInboundIn(data))
        }

        func channelInactive(context: ChannelHandlerContext) {
            continuation.finish()
            context.fireChannelInactive()
        }
    }

    private let channel: any Channel
    private var parts: AsyncStream<HTTPClientResponsePart>.AsyncIterator

    private init(channel: any Channel, parts: AsyncStream<HTTPClientResponsePart>) {
        self.channel = channel
        self.parts = parts.makeAsyncIterator()
    }

    static func open(port: Int) async throws -> KeepAliveConnection {
        let (parts, continuation) = AsyncStream.makeStream(of: HTTPClientResponsePart.self)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(Collector(continuation))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return KeepAliveConnection(channel: channel, parts: parts)
    }

    /// Sends a request and reads its whole response (an SSE stream included, to its end).
    func send(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: String? = nil)
        async throws -> Response
    {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: "127.0.0.1")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        if let body { head.headers.add(name: "Content-Length", value: String(body.utf8.count)) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: body))), promise: nil) }
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        var response: Response?
        while let part = await parts.next() {
            switch part {
            case .head(let head):
                response = Response(status: Int(head.status.code), headers: head.headers, body: [])
            case .body(let buffer):
                response?.body += buffer.readableBytesView
            case .end:
                guard let response else { throw ClosedWithoutResponse() }
                return response
            }
        }
        throw ClosedWithoutResponse()
    }

    func close() { channel.close(promise: nil) }
}
