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

    private let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
    private var inbound: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>

    private init(_ channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>) throws {
        self.channel = channel
        // The connection lives as long as this object; its streams are used directly (no executeThenClose scope).
        inbound = channel.inbound.makeAsyncIterator()
        outbound = channel.outbound
    }

    static func open(port: Int) async throws -> KeepAliveConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        return try KeepAliveConnection(channel)
    }

    /// Sends a request and reads its whole response (an SSE stream included, to its end).
    func send(_ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: String? = nil)
        async throws -> Response
    {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: "127.0.0.1")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        if let body { head.headers.add(name: "Content-Length", value: String(body.utf8.count)) }
        try await outbound.write(.head(head))
        if let body { try await outbound.write(.body(.byteBuffer(ByteBuffer(string: body)))) }
        try await outbound.write(.end(nil))
        var response: Response?
        while let part = try await inbound.next() {
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

    func close() {
        outbound.finish()
        channel.channel.close(promise: nil)
    }

    deinit { close() }
}
