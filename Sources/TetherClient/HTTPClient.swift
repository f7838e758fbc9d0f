import NIOCore
import NIOHTTP1
import NIOPosix
import TetherCore

/// A response read to its end.
public struct HTTPResult: Sendable {
    /// The status code.
    public var status: Int
    /// The headers, names lower-cased.
    public var headers: [String: String]
    /// The body bytes.
    public var body: [UInt8]
    /// The body as text.
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// A streaming response: status and headers, then body chunks as they arrive.
public struct HTTPStream: Sendable {
    /// The status code.
    public var status: Int
    /// The headers, names lower-cased.
    public var headers: [String: String]
    /// Body chunks as they arrive; ends when the server ends the response. Read it through either this or
    /// ``events`` (which keeps what it has parsed but not yet returned), not both.
    public let body: AsyncThrowingStream<ByteBuffer, any Error>
    let channel: any Channel
    /// The body as SSE events, across calls: events parsed beyond what a call asked for wait for the next call.
    public let events: SSEReader

    /// Closes the connection (as a client that goes away does).
    public func close() { channel.close(promise: nil) }

    /// Reads SSE events until `stop` returns true for those read by this call (or the response ends).
    public func readEvents(until stop: ([SSEEvent]) -> Bool = { _ in false }) async throws -> [SSEEvent] {
        try await events.read(until: stop)
    }
}

/// A small HTTP/1.1 client on SwiftNIO, one connection per request: enough for tests and benchmarks to drive the
/// gateway as a real client does (streamed bodies, early disconnects).
public struct HTTPClient: Sendable {
    /// The server's host.
    public var host: String
    /// The server's port.
    public var port: Int
    let group: any EventLoopGroup

    /// Makes a client for `host:port`.
    public init(
        host: String = "127.0.0.1", port: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.host = host
        self.port = port
        self.group = group
    }

    /// Sends a request and reads the whole response.
    public func send(
        _ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil
    ) async throws -> HTTPResult {
        let stream = try await open(method, path, headers: headers, body: body)
        var bytes: [UInt8] = []
        for try await chunk in stream.body { bytes += chunk.readableBytesView }
        return HTTPResult(status: stream.status, headers: stream.headers, body: bytes)
    }

    /// Sends a request and returns as soon as the response head arrives; the body streams.
    public func open(
        _ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil
    ) async throws -> HTTPStream {
        let (chunks, chunkContinuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
        let (head, channel) = try await request(
            method, path, headers: headers, body: body, sink: .stream(chunkContinuation))
        chunkContinuation.onTermination = { _ in channel.close(promise: nil) }
        return HTTPStream(
            status: Int(head.status.code), headers: Self.names(head), body: chunks, channel: channel,
            events: SSEReader(chunks))
    }

    /// Sends a request and hands every body chunk to `onChunk` as it arrives, on the connection's event loop (no
    /// task switch per chunk: for load generators that share the machine with the server they measure). Returns
    /// the response's status and headers once the response has ended. `onChunk` runs serially, one connection's
    /// chunks in order; it must not block.
    public func stream(
        _ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
        onChunk: @escaping @Sendable (ByteBuffer) -> Void
    ) async throws -> (status: Int, headers: [String: String]) {
        let loop = group.any()
        let ended = loop.makePromise(of: Void.self)
        let (head, _) = try await request(
            method, path, headers: headers, body: body, sink: .callback(onChunk, ended), on: loop)
        try await ended.futureResult.get()
        return (Int(head.status.code), Self.names(head))
    }

    private func request(
        _ method: HTTPMethod, _ path: String, headers: [(String, String)], body: [UInt8]?, sink: ResponseSink,
        on loop: (any EventLoop)? = nil
    ) async throws -> (HTTPResponseHead, any Channel) {
        let loop = loop ?? group.any()
        let headPromise = loop.makePromise(of: HTTPResponseHead.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(ResponseCollector(head: headPromise, sink: sink))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            headPromise.fail(error)
            sink.finish(throwing: error)
            throw error
        }
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: "\(host):\(port)")
        head.headers.add(name: "Connection", value: "close")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        if let body { head.headers.add(name: "Content-Length", value: String(body.count)) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        do {
            return (try await headPromise.futureResult.get(), channel)
        } catch {
            channel.close(promise: nil)
            throw error
        }
    }

    private static func names(_ head: HTTPResponseHead) -> [String: String] {
        var names: [String: String] = [:]
        for header in head.headers { names[header.name.lowercased()] = header.value }
        return names
    }
}

/// Errors of ``HTTPClient``.
public enum HTTPClientError: Error, Sendable {
    /// The connection closed before a response head.
    case noResponse
}

/// Where a response's body goes.
private enum ResponseSink: Sendable {
    case stream(AsyncThrowingStream<ByteBuffer, any Error>.Continuation)
    case callback(@Sendable (ByteBuffer) -> Void, EventLoopPromise<Void>)

    func yield(_ chunk: ByteBuffer) {
        switch self {
        case .stream(let continuation): continuation.yield(chunk)
        case .callback(let onChunk, _): onChunk(chunk)
        }
    }

    func finish(throwing error: (any Error)? = nil) {
        switch self {
        case .stream(let continuation): continuation.finish(throwing: error)
        case .callback(_, let ended):
            if let error { ended.fail(error) } else { ended.succeed() }
        }
    }
}

/// Completes the head promise, then passes body chunks to the sink as they are read (on the event loop).
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    let head: EventLoopPromise<HTTPResponseHead>
    let sink: ResponseSink
    private var sawHead = false
    private var finished = false

    init(head: EventLoopPromise<HTTPResponseHead>, sink: ResponseSink) {
        self.head = head
        self.sink = sink
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let responseHead):
            sawHead = true
            head.succeed(responseHead)
        case .body(let buffer):
            sink.yield(buffer)
        case .end:
            finish(nil)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(sawHead ? nil : HTTPClientError.noResponse)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(error)
        context.close(promise: nil)
    }

    private func finish(_ error: (any Error)?) {
        guard !finished else { return }
        finished = true
        if !sawHead { head.fail(error ?? HTTPClientError.noResponse) }
        sink.finish(throwing: error)
    }
}

/// Reads a response body as SSE events, one call after another, losing nothing between calls.
public final class SSEReader: @unchecked Sendable {
    // Used by one task at a time (the reader of the response), as an iterator is.
    private var iterator: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator
    private var parser = SSEParser()
    private var pending: [SSEEvent] = []

    init(_ body: AsyncThrowingStream<ByteBuffer, any Error>) {
        iterator = body.makeAsyncIterator()
    }

    /// Comments (heartbeats) seen so far.
    public var comments: Int { parser.comments }

    /// Reads one more chunk of the body (its events wait for the next ``read(until:)``); `false` at the end.
    public func pump() async throws -> Bool {
        guard let chunk = try await iterator.next() else { return false }
        pending += parser.feed(chunk.readableBytesView)
        return true
    }

    /// Events until `stop` holds for the events of this call, or the body ends.
    public func read(until stop: ([SSEEvent]) -> Bool) async throws -> [SSEEvent] {
        try await read(as: { $0 }, until: stop)
    }

    /// Events turned into `T` (once each) until `stop` holds for those of this call, or the body ends.
    /// Yields to other tasks every 256 events, so a long catch-up does not hold a thread of the cooperative pool.
    public func read<T>(as transform: (SSEEvent) -> T, until stop: ([T]) -> Bool) async throws -> [T] {
        var taken: [T] = []
        while true {
            var next = 0
            while next < pending.count {
                taken.append(transform(pending[next]))
                next += 1
                if stop(taken) {
                    pending.removeFirst(next)
                    return taken
                }
                if next % 256 == 0 { await Task.yield() }
            }
            pending.removeAll(keepingCapacity: true)
            guard try await pump() else { return taken }
        }
    }
}
