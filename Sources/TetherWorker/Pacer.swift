import NIOCore
import NIOPosix

/// Runs actions a fixed delay after they are queued, with one NIO timer per event loop instead of one per action.
///
/// Every action waits the same delay, so actions come due in the order they were queued: a FIFO queue per loop
/// replaces NIO's timer heap. With a thousand executions pacing their tokens, that heap held a thousand timers and
/// was re-sorted (copying its entries) on every token.
///
/// An action runs on the event loop that queued it (any loop of the group when queued from elsewhere). Queues
/// are confined to their loop.
public final class Pacer: Sendable {
    /// The delay between queueing an action and running it.
    public let delay: TimeAmount
    private let group: MultiThreadedEventLoopGroup
    private let queues: [ObjectIdentifier: Queue]

    /// Makes a pacer over the loops of `group`.
    public init(delay: TimeAmount, group: MultiThreadedEventLoopGroup = .singleton) {
        self.delay = delay
        self.group = group
        var queues: [ObjectIdentifier: Queue] = [:]
        for loop in group.makeIterator() {
            queues[ObjectIdentifier(loop)] = Queue(loop: loop, delay: delay)
        }
        self.queues = queues
    }

    /// Runs `action` after the delay, on the current event loop of the group (or any of its loops).
    public func after(_ action: @escaping @Sendable () -> Void) {
        if let loop = MultiThreadedEventLoopGroup.currentEventLoop, let queue = queues[ObjectIdentifier(loop)] {
            queue.enqueue(action)
            return
        }
        // Called off the group's loops: hand the action to one of them (every loop of the group has a queue).
        let loop = group.any()
        let queue = queues[ObjectIdentifier(loop)]!
        loop.execute { queue.enqueue(action) }
    }

    /// One loop's actions. Confined to that loop (checked in debug builds): the only accesses are `enqueue` from
    /// the loop itself and the timer it arms there.
    final class Queue: @unchecked Sendable {
        private let loop: any EventLoop
        private let delay: TimeAmount
        private var entries = CircularBuffer<(deadline: NIODeadline, action: () -> Void)>(initialCapacity: 64)
        private var armedFor: NIODeadline?

        init(loop: any EventLoop, delay: TimeAmount) {
            self.loop = loop
            self.delay = delay
        }

        func enqueue(_ action: @escaping () -> Void) {
            assert(loop.inEventLoop)
            let deadline = NIODeadline.now() + delay
            entries.append((deadline, action))
            if armedFor == nil { arm(deadline) }
        }

        private func arm(_ deadline: NIODeadline) {
            armedFor = deadline
            loop.assumeIsolated().scheduleTask(deadline: deadline) { self.fire() }
        }

        private func fire() {
            armedFor = nil
            let now = NIODeadline.now()
            // Actions queued while these run come due a full delay later, so this loop ends.
            while let first = entries.first, first.deadline <= now {
                entries.removeFirst()
                first.action()
            }
            if let first = entries.first { arm(first.deadline) }
        }
    }
}
