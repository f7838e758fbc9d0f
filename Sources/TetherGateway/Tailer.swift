import Logging
import RedisKit
import Synchronization
import TetherCore

/// What a following client receives from the ``Tailer``.
public enum TailSignal: Sendable {
    /// New events of the execution, in order, directly following the id `after` (they may repeat ids the client
    /// already has: skip them; when `after` is beyond the client's last id, signals were dropped from its full
    /// queue: catch up from the log first).
    case events(after: StreamID, [StoredEvent])
    /// A heartbeat tick: write a comment to keep the connection alive. `latest` is the newest id the tailer has
    /// fanned out: a client behind it missed signals and catches up from the log.
    case heartbeat(latest: StreamID)
}

/// Live tailing for every SSE client of one gateway, with a bounded number of Redis connections.
///
/// "Announce, then read" (docs/protocol.md): every append publishes its entries on `…:{exec}:tail`, with the id
/// that preceded them (``TailAnnouncement``). The tailer keeps one subscription per watched execution on the
/// client's one pub/sub connection. When an announcement follows the watch's cursor, its entries are fanned out to
/// every local client of that execution at once; otherwise (a gap, a read in flight), and on every heartbeat tick
/// as a safety net, it reads `XREAD COUNT n STREAMS …:events <cursor>` on a pooled connection, at most one read in
/// flight per execution (announcements meanwhile mark it dirty).
///
/// Reading from replicas (a cluster, ``RedisClientProtocol/replicaReads``), an announcement is only a bell: a
/// cluster passes shard-channel messages to a master's replicas over its bus, not with the replication stream, so
/// one can arrive before (or without) the entries it names. The tailer then reads the replica for them, and reads
/// again every millisecond, for up to ``replicaWait``, while the replica has not yet caught up with the newest
/// announced entry: what a client is sent is on a replica, and survives a failover.
///
/// Invariant that makes catch-up and live delivery meet with no gap: a client is registered (``follow(_:)``)
/// before it catches up from the log, and the watch's read cursor was initialised before that. Any entry newer
/// than the client's catch-up is therefore read after the client was registered, and fanned out to it; entries
/// it gets twice (read by catch-up and by the fan-out) are skipped by id.
public final class Tailer: Sendable {
    /// One client's feed; iterate ``signals`` and call ``Tailer/leave(_:)`` when done.
    public struct Feed: Sendable {
        let executionID: String
        let clientID: UInt64
        /// Events and heartbeats for this client.
        public let signals: AsyncStream<TailSignal>
    }

    private final class Watch: Sendable {
        struct State {
            var clients: [UInt64: AsyncStream<TailSignal>.Continuation] = [:]
            var cursor: StreamID = .zero
            var reading = false
            var dirty = false
            /// The newest entry announced (reading from replicas: the reads go on until the replica has it).
            var announced: StreamID = .zero
            var subscription: RedisSubscriptionHandle?
            /// Completes when the subscription is confirmed and the cursor set.
            var ready: Task<Void, any Error>?
        }
        let executionID: String
        /// Which slice of the heartbeat interval ticks this watch (ticks are spread over the interval).
        let slot: Int
        let state = Mutex(State())

        init(executionID: String, slot: Int) {
            self.executionID = executionID
            self.slot = slot
        }
    }

    private struct State {
        var watches: [String: Watch] = [:]
        var nextClientID: UInt64 = 0
        var nextSlot = 0
    }

    private let store: ExecutionStore
    /// Whether announcements are only bells (see the type's notes).
    private let announcementsAreBells: Bool
    private let readBatch: Int
    private let clientQueue: Int
    private let logger: Logger
    private let state = Mutex(State())

    /// How long reads go on for an announced entry a replica does not have yet.
    static let replicaWait = Duration.seconds(2)

    /// Makes a tailer reading through `store`'s client. Each client's queue holds at most `clientQueue` signals
    /// (a client that does not keep up loses signals, not memory, and catches up from the log). With
    /// `readsReplicas`, announcements are bells (see the type's notes).
    public init(
        store: ExecutionStore, readsReplicas: Bool = false, readBatch: Int = 512, clientQueue: Int = 256,
        logger: Logger
    ) {
        self.store = store
        self.announcementsAreBells = readsReplicas
        self.readBatch = readBatch
        self.clientQueue = max(1, clientQueue)
        self.logger = logger
        store.redis.pubSub.onResubscribe { [weak self] in self?.pokeAll() }
    }

    /// Executions with at least one local client.
    public var watchedCount: Int { state.withLock { $0.watches.count } }

    /// Local clients following an execution.
    public var clientCount: Int {
        let watches = state.withLock { Array($0.watches.values) }
        return watches.reduce(0) { $0 + $1.state.withLock { $0.clients.count } }
    }

    /// Registers a client of `executionID`; returns once live delivery is armed, so that the client can catch up
    /// from the log and then rely on the feed.
    public func follow(_ executionID: String) async throws -> Feed {
        let (signals, continuation) = AsyncStream.makeStream(
            of: TailSignal.self, bufferingPolicy: .bufferingOldest(clientQueue))
        let (ready, clientID) = state.withLock { state -> (Task<Void, any Error>, UInt64) in
            state.nextClientID += 1
            let clientID = state.nextClientID
            if let watch = state.watches[executionID] {
                return watch.state.withLock { watchState in
                    watchState.clients[clientID] = continuation
                    return (watchState.ready!, clientID)
                }
            }
            state.nextSlot &+= 1
            let watch = Watch(executionID: executionID, slot: state.nextSlot & Int.max)
            let ready = Task { try await self.arm(watch) }
            watch.state.withLock { watchState in
                watchState.clients[clientID] = continuation
                watchState.ready = ready
            }
            state.watches[executionID] = watch
            return (ready, clientID)
        }
        let feed = Feed(executionID: executionID, clientID: clientID, signals: signals)
        do {
            try await ready.value
        } catch {
            leave(feed)
            throw error
        }
        return feed
    }

    /// Finishes a client's feed (its loop over ``Feed/signals`` ends); it stays registered until ``leave(_:)``.
    public func end(_ feed: Feed) {
        let watch = state.withLock { $0.watches[feed.executionID] }
        watch?.state.withLock { $0.clients[feed.clientID]?.finish() }
    }

    /// Unregisters a client; the last client of an execution unsubscribes from its channel.
    public func leave(_ feed: Feed) {
        let removed: Watch? = state.withLock { state in
            guard let watch = state.watches[feed.executionID] else { return nil }
            let empty = watch.state.withLock { watchState -> Bool in
                watchState.clients[feed.clientID]?.finish()
                watchState.clients[feed.clientID] = nil
                return watchState.clients.isEmpty
            }
            guard empty else { return nil }
            state.watches[feed.executionID] = nil
            return watch
        }
        guard let removed else { return }
        let (subscription, ready) = removed.state.withLock { ($0.subscription, $0.ready) }
        subscription?.cancel()
        ready?.cancel()
    }

    /// Sends a heartbeat to the clients of the watches in `slice` (of `slices`, by ``Watch/slot``) and re-reads
    /// those executions, many per `XREAD` (the safety net for lost announcements). The heartbeat service calls it
    /// `slices` times per heartbeat interval, one slice after the other, so that every client gets a heartbeat
    /// every interval while the work is spread over it rather than done for every client at once.
    public func tick(slice: Int = 0, of slices: Int = 1) {
        let watches = state.withLock { state in
            state.watches.values.filter { slices <= 1 || $0.slot % slices == slice }
        }
        var reads: [(watch: Watch, cursor: StreamID)] = []
        for watch in watches {
            let (clients, latest, read) = watch.state.withLock { state in
                (Array(state.clients.values), state.cursor, Self.startRead(&state))
            }
            for client in clients { client.yield(.heartbeat(latest: latest)) }
            if read { reads.append((watch, latest)) }
        }
        if !reads.isEmpty { Task { await self.readMany(reads) } }
    }

    private func pokeAll() {
        let watches = state.withLock { Array($0.watches.values) }
        for watch in watches { poke(watch) }
    }

    /// How long arming a watch is retried while the pub/sub connection is being re-established: Redis closes a
    /// subscriber whose output buffer passed `client-output-buffer-limit pubsub` (a gateway far behind, say), and
    /// the streams starting meanwhile wait for the new connection instead of ending. A client that leaves during
    /// that wait, and graceful shutdown, are noticed when it ends (its stream registers for them once it follows).
    static let armRetry = Duration.seconds(10)

    /// ``armOnce(_:)``, again while the pub/sub connection is down, for up to ``armRetry``.
    private func arm(_ watch: Watch) async throws {
        let deadline = ContinuousClock.now + Self.armRetry
        while true {
            do {
                return try await armOnce(watch)
            } catch let error as RedisError
                where [.connectionClosed, .unavailable].contains(error.code) && ContinuousClock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// Subscribes to the execution's tail channel, then sets the read cursor to its newest entry.
    private func armOnce(_ watch: Watch) async throws {
        // Announcements are handled where they are parsed, on the pub/sub connection's event loop (no task switch);
        // one that is missed is caught by the previous-id check of the next, or by the tick.
        let subscription = try await store.redis.pubSub.subscribe(
            store.keys.tail(watch.executionID), kind: store.keys.channelKind
        ) { [weak self] message in self?.announced(watch, message.payload) }
        let newest: RESPValue
        do {
            newest = try await store.redis.send("XREVRANGE", store.keys.events(watch.executionID), "+", "-", "COUNT", 1)
        } catch {
            subscription.cancel()
            throw error
        }
        let cursor = ExecutionStore.parseEntries(newest).first?.position ?? .zero
        watch.state.withLock { state in
            state.cursor = cursor
            state.subscription = subscription
        }
        if Task.isCancelled {
            subscription.cancel()
            return
        }
        // Entries appended between the cursor read and now were announced before the watch listened.
        poke(watch)
    }

    /// Delivers the entries carried by an announcement when they follow the watch's cursor; otherwise (a gap,
    /// a read in flight, an unknown payload) reads the stream instead.
    private func announced(_ watch: Watch, _ payload: [UInt8]) {
        guard let announcement = TailAnnouncement(payload) else {
            poke(watch)
            return
        }
        if announcementsAreBells {
            if let last = announcement.events.last?.position {
                watch.state.withLock { $0.announced = max($0.announced, last) }
            }
            poke(watch)
            return
        }
        let delivered = watch.state.withLock { state -> Bool in
            guard state.subscription != nil, !state.reading, announcement.previousID <= state.cursor else {
                return false
            }
            let fresh = announcement.events.filter { $0.position.map { $0 > state.cursor } ?? false }
            if let last = fresh.last?.position {
                let previous = state.cursor
                state.cursor = last
                for client in state.clients.values { client.yield(.events(after: previous, fresh)) }
            }
            return true
        }
        if !delivered { poke(watch) }
    }

    private func poke(_ watch: Watch) {
        guard watch.state.withLock({ Self.startRead(&$0) }) else { return }
        Task { await self.read(watch) }
    }

    /// Marks a read as started (one per watch at a time); when one is in flight, marks the watch dirty instead.
    private static func startRead(_ state: inout Watch.State) -> Bool {
        guard state.subscription != nil else { return false }
        if state.reading {
            state.dirty = true
            return false
        }
        state.reading = true
        state.dirty = false
        return true
    }

    /// Reads from the watch's cursor until caught up, fanning entries out; one such loop per watch at a time.
    private func read(_ watch: Watch) async {
        var behindSince: ContinuousClock.Instant?
        while true {
            let cursor = watch.state.withLock { $0.cursor }
            var events: [StoredEvent] = []
            do {
                let reply = try await store.redis.send(
                    "XREAD", "COUNT", readBatch, "STREAMS", store.keys.events(watch.executionID), cursor.description)
                if let stream = reply.array?.first?.array, stream.count == 2 {
                    events = ExecutionStore.parseEntries(stream[1])
                }
            } catch {
                logger.warning("tail read of \(watch.executionID) failed: \(error)")
            }
            switch settle(watch, after: cursor, events) {
            case .done: return
            case .again: behindSince = nil
            case .behind:
                // The replica has not caught up with an announced entry yet.
                let since = behindSince ?? .now
                behindSince = since
                if ContinuousClock.now - since > Self.replicaWait {
                    watch.state.withLock { $0.reading = false }
                    return
                }
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
    }

    /// The safety-net reads of a tick: one `XREAD` for up to 100 executions of one shard (a cluster serves no
    /// command over keys of several slots, and a shard's executions share one); those with more to read go on alone.
    private func readMany(_ reads: [(watch: Watch, cursor: StreamID)]) async {
        let byShard = Dictionary(grouping: reads) { store.keys.shard(of: $0.watch.executionID) }
        for (_, reads) in byShard.sorted(by: { $0.key < $1.key }) {
            for start in stride(from: 0, to: reads.count, by: 100) {
                await readChunk(reads[start..<min(start + 100, reads.count)])
            }
        }
    }

    private func readChunk(_ chunk: ArraySlice<(watch: Watch, cursor: StreamID)>) async {
        let streams = chunk.map { store.keys.events($0.watch.executionID) }
        var arguments: [any RedisArgument] = ["COUNT", readBatch, "STREAMS"]
        arguments += streams.map { $0 as any RedisArgument }
        arguments += chunk.map { $0.cursor.description as any RedisArgument }
        var found: [String: [StoredEvent]] = [:]
        do {
            let reply = try await store.redis.send(RedisCommand("XREAD", arguments: arguments))
            for stream in reply.array ?? [] {
                guard let pair = stream.array, pair.count == 2, let key = pair[0].string else { continue }
                found[key] = ExecutionStore.parseEntries(pair[1])
            }
        } catch {
            logger.warning("tail read of \(chunk.count) executions failed: \(error)")
        }
        for ((watch, cursor), stream) in zip(chunk, streams)
        where settle(watch, after: cursor, found[stream] ?? []) != .done {
            Task { await self.read(watch) }
        }
    }

    /// What a read is to do next.
    private enum Next {
        /// Read on at once: a full batch, or announcements came meanwhile.
        case again
        /// Read again shortly: the replica read does not have the newest announced entry yet.
        case behind
        /// Caught up; the read has ended.
        case done
    }

    /// Fans out what a read from `cursor` found; says whether to read again (the read stays marked in flight), else
    /// ends the read.
    private func settle(_ watch: Watch, after cursor: StreamID, _ events: [StoredEvent]) -> Next {
        watch.state.withLock { state -> Next in
            if let last = events.last?.position, last > state.cursor {
                state.cursor = last
            }
            if !events.isEmpty {
                for client in state.clients.values { client.yield(.events(after: cursor, events)) }
            }
            if events.count == readBatch || state.dirty {
                state.dirty = false
                return .again
            }
            if state.cursor < state.announced { return .behind }
            state.reading = false
            return .done
        }
    }
}
