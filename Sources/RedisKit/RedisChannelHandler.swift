import NIOCore

/// Where the reply (or replies) of one write go.
enum RedisReplyTarget: Sendable {
    /// One command, one reply.
    case single(EventLoopPromise<RESPValue>)
    /// A pipelined batch: `count` replies collected into one array, in order.
    case batch(count: Int, EventLoopPromise<[RESPValue]>)

    func fail(_ error: any Error) {
        switch self {
        case .single(let promise): promise.fail(error)
        case .batch(_, let promise): promise.fail(error)
        }
    }
}

/// The NIO handler under every ``RedisConnection``: writes encoded commands, feeds the bytes that come back to
/// hiredis's reader and completes the waiting promises in order.
///
/// Invariants (all state is confined to the channel's event loop):
/// - `pending` holds one entry per write that expects replies, in the order the writes reached the socket; Redis
///   answers in that order, so the head always owns the next reply.
/// - A reply that arrives while `pending` is empty is a push (pub/sub message or confirmation) and goes to
///   `pushHandler`; without one it is a protocol violation and the connection is closed.
/// - Only the head can be the oldest command, so one timer checks the head's deadline; when it passes, the
///   connection is closed, failing every pending entry (the replies' order can no longer be trusted).
/// - After `channelInactive` no entry is accepted: writes fail at once with `commandMayHaveRun == false`.
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var target: RedisReplyTarget
        var deadline: NIODeadline
    }

    private let reader = RESPReader()
    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    /// The replies collected so far for the batch at the head of `pending` (kept out of the ring buffer so that
    /// appending never copies the array).
    private var headBatch: [RESPValue] = []
    private var context: ChannelHandlerContext?
    private var closedError: RedisError?
    private var flushScheduled = false
    private var timeoutTimer: Scheduled<Void>?
    private var timeoutTimerDeadline: NIODeadline?
    /// Receives replies that no command waits for: the messages and confirmations of pub/sub.
    var pushHandler: ((RESPValue) -> Void)?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(RedisError(.connectionClosed, "connection closed"))
        self.context = nil
    }

    /// Writes an encoded command (or batch) whose replies go to `target`. Event loop only.
    func enqueue(_ buffer: ByteBuffer, target: RedisReplyTarget, deadline: NIODeadline) {
        guard let context, closedError == nil else {
            target.fail(
                RedisError(.connectionClosed, closedError?.message ?? "connection closed", commandMayHaveRun: false))
            return
        }
        pending.append(Pending(target: target, deadline: deadline))
        context.write(wrapOutboundOut(buffer), promise: nil)
        scheduleFlush(context)
        armTimer(for: deadline)
    }

    /// Writes bytes that expect no direct reply (pub/sub commands, whose confirmations are pushes). Event loop only.
    func writeUnanswered(_ buffer: ByteBuffer) {
        guard let context, closedError == nil else { return }
        context.write(wrapOutboundOut(buffer), promise: nil)
        scheduleFlush(context)
    }

    private func scheduleFlush(_ context: ChannelHandlerContext) {
        // Every write queued in this loop tick leaves in one flush (one syscall for many pipelined commands).
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            self.context?.flush()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            try reader.feed(unwrapInboundIn(data))
            while let reply = try reader.next() {
                deliver(reply, context: context)
            }
        } catch {
            fail(with: error, context: context)
        }
    }

    private func deliver(_ reply: RESPValue, context: ChannelHandlerContext) {
        guard !pending.isEmpty else {
            if let pushHandler {
                pushHandler(reply)
            } else {
                fail(
                    with: RedisError(.protocolError, "reply with no command waiting for it: \(reply)"), context: context
                )
            }
            return
        }
        switch pending[pending.startIndex].target {
        case .single(let promise):
            pending.removeFirst()
            promise.succeed(reply)
        case .batch(let count, let promise):
            if headBatch.isEmpty { headBatch.reserveCapacity(count) }
            headBatch.append(reply)
            if headBatch.count == count {
                pending.removeFirst()
                let replies = headBatch
                headBatch = []
                promise.succeed(replies)
            }
        }
    }

    private func armTimer(for deadline: NIODeadline) {
        guard let context, deadline != .distantFuture else { return }
        if let armed = timeoutTimerDeadline, timeoutTimer != nil {
            if armed <= deadline { return }
            timeoutTimer?.cancel()
        }
        timeoutTimerDeadline = deadline
        timeoutTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { self.checkTimeout() }
    }

    private func checkTimeout() {
        timeoutTimer = nil
        timeoutTimerDeadline = nil
        guard let context else { return }
        // Replies come in order, so the oldest entry with a deadline is the first to expire.
        guard let next = pending.first(where: { $0.deadline != .distantFuture }) else { return }
        if next.deadline <= .now() {
            fail(with: RedisError(.timeout, "Redis did not reply within the command timeout"), context: context)
        } else {
            armTimer(for: next.deadline)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError(.connectionClosed, "connection closed by the server or the network"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(with: error, context: context)
    }

    private func fail(with error: any Error, context: ChannelHandlerContext) {
        failAll(error as? RedisError ?? RedisError(.connectionClosed, "connection failed: \(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ error: RedisError) {
        if closedError == nil { closedError = error }
        timeoutTimer?.cancel()
        timeoutTimer = nil
        timeoutTimerDeadline = nil
        headBatch = []
        while let entry = pending.popFirst() {
            entry.target.fail(error)
        }
    }
}
