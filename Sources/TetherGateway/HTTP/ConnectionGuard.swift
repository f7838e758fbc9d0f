import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// Enforces ``ConnectionTimeouts`` on one connection, and tells streams when the client has gone.
///
/// Sits after Hummingbird's HTTP codec (it sees request and response parts); ``ConnectionBytesHandler``, at the
/// front of the pipeline, reports raw bytes to it, so that a request whose headers never end is noticed from its
/// first byte. It also completes ``inboundClosed`` when the client closes its side or the connection goes, which an
/// SSE response watches (see ``ConnectionGuard/inboundClosed(of:)``) without reading the connection's request
/// parts: the next request on a kept-alive connection stays where Hummingbird reads it.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limits: ConnectionTimeouts.Limits
    private var timeouts = ConnectionTimeouts()
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?
    private let logger: Logger
    /// Completes when the client has closed its side, or the connection is gone.
    private(set) var inboundClosed: EventLoopPromise<Void>?

    init(limits: ConnectionTimeouts.Limits, logger: Logger) {
        self.limits = limits
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        inboundClosed = context.eventLoop.makePromise()
        if context.channel.isActive { perform(timeouts.start()) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        inboundClosed?.succeed()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        perform(timeouts.start())
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        perform(timeouts.closed())
        inboundClosed?.succeed()
        context.fireChannelInactive()
    }

    /// Called by ``ConnectionBytesHandler`` for every read, before the HTTP decoder sees the bytes.
    func bytesReceived() {
        perform(timeouts.bytesReceived())
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: perform(timeouts.headReceived())
        case .body: break
        case .end: perform(timeouts.endReceived())
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { perform(timeouts.responseEnded()) }
        context.write(data, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(.inputClosed) = event as? ChannelEvent { inboundClosed?.succeed() }
        context.fireUserInboundEventTriggered(event)
    }

    private func perform(_ action: ConnectionTimeouts.Action) {
        switch action {
        case .none:
            break
        case .schedule(let deadline):
            timer?.cancel()
            guard let context else { return }
            let delay: Duration
            switch deadline {
            case .header: delay = limits.header
            case .body: delay = limits.body
            case .idle: delay = limits.idle
            }
            let loop = context.eventLoop.assumeIsolated()
            timer = loop.scheduleTask(in: TimeAmount(delay)) { [self] in
                timer = nil
                perform(timeouts.deadlinePassed())
            }
        case .cancel:
            timer?.cancel()
            timer = nil
        case .close:
            timer = nil
            logger.debug("closing a connection that outlived its \(timeouts.state) deadline")
            context?.close(promise: nil)
        }
    }

    /// The future that completes when the client of `channel` closes its side or the connection goes; `nil` when
    /// the channel has no guard (a server built without ``GuardedHTTP1Channel``).
    static func inboundClosed(of channel: any Channel) async -> EventLoopFuture<Void>? {
        try? await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: ConnectionGuard.self).inboundClosed?.futureResult
        }.get()
    }
}

/// At the front of the pipeline: reports each read to the connection's ``ConnectionGuard`` before the HTTP decoder
/// consumes it, so that the header deadline starts at a request's first byte.
final class ConnectionBytesHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let connectionGuard: ConnectionGuard

    init(_ connectionGuard: ConnectionGuard) { self.connectionGuard = connectionGuard }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connectionGuard.bytesReceived()
        context.fireChannelRead(data)
    }
}

/// Hummingbird's HTTP/1 channel with a ``ConnectionGuard``: header, body and keep-alive deadlines, and the
/// client-gone signal that SSE responses watch.
struct GuardedHTTP1Channel: ServerChildChannel, HTTPChannelHandler {
    typealias Value = HTTP1Channel.Value

    let http1: HTTP1Channel
    let limits: ConnectionTimeouts.Limits

    var responder: HTTPChannelHandler.Responder { http1.responder }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        http1.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let connectionGuard = ConnectionGuard(limits: limits, logger: logger)
            // After the codec (request and response parts), before Hummingbird's own connection state handler.
            try channel.pipeline.syncOperations.addHandler(
                connectionGuard,
                position: .after(try channel.pipeline.syncOperations.handler(type: HTTP1ToHTTPServerCodec.self)))
            try channel.pipeline.syncOperations.addHandler(ConnectionBytesHandler(connectionGuard), position: .first)
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await http1.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 with a ``ConnectionGuard`` on every connection.
    static func guardedHTTP1(limits: ConnectionTimeouts.Limits) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            GuardedHTTP1Channel(http1: HTTP1Channel(responder: responder), limits: limits)
        }
    }
}
