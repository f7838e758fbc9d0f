import Foundation
import Logging
import RedisKit
import ServiceLifecycle
import Synchronization
import TetherCore

/// Takes jobs from `…:jobs` (one stream per shard: see ``Keys``) with a consumer group and runs them, at most
/// `concurrency` at once. An execution that
/// waits for a human decision is parked (see ``Scripts/park``): its job leaves the stream, and it holds nothing in
/// any worker (no slot, task, subscription or timer) until a decision, a cancel or its deadline
/// (``ApprovalDeadlines``) queues it again.
///
/// Crash recovery: the idle time of a job's pending entry is its lease. The running worker renews the leases of all
/// its jobs together (one `XCLAIM … JUSTID` per 500 entries) every third of the lease; a job whose entry stays idle
/// longer than the lease (its worker died) is taken over by another worker with `XAUTOCLAIM`, which raises the
/// execution's fence (so the old owner, if it was only slow, can append nothing more) and resumes from the log.
/// Each round of `XAUTOCLAIM` goes on from where the last one stopped, so an orphan behind any number of live jobs
/// is reached within the lease and one round.
///
/// With one job stream the loop blocks on it (`XREADGROUP … BLOCK`). With N (the sharded layout, whose streams are
/// in N slots that no one command can read together) it reads without blocking the streams whose jobs bell rang
/// (rung by the scripts that add a job), and all of them after a second without a bell.
public final class WorkerService: Service, Sendable {
    let store: ExecutionStore
    let runner: AgentRunner
    let concurrency: Int
    let lease: Duration
    let consumer: String
    let logger: Logger
    /// The executions this worker holds, with their job entries, and entries of the same executions that came
    /// while they ran (a decision queued one just as the run parked): each runs after the one before it.
    private let active = Mutex<Jobs>(Jobs())
    /// Where the last round of `XAUTOCLAIM` stopped, per shard.
    private let reclaimCursors = Mutex<[Int: String]>([:])
    private let probe: RedisProbe
    private let deadlines: ApprovalDeadlines
    /// The MCP servers of the configuration (started when first used, stopped with the worker).
    private let servers: [MCPToolServer]

    /// Makes a worker process's job loop; agents read their API keys from `environment`.
    public init(
        config: TetherConfig, redis: any RedisClientProtocol,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger = Logger(label: "tether.worker")
    ) {
        let store = ExecutionStore(redis: redis, config: config)
        self.store = store
        let servers = config.tools.mcp.map { MCPToolServer($0, logger: logger) }
        self.servers = servers
        self.runner = AgentRunner(
            store: store, agents: config.agents, providers: Providers.make(for: config, environment: environment),
            tools: ToolCatalog(config: config.tools, servers: servers),
            conversationMaxMessages: config.conversations.maxMessages, logger: logger)
        self.concurrency = max(1, config.workers.concurrency)
        self.lease = .milliseconds(Int64(config.workers.leaseSeconds * 1000))
        self.consumer = "\(ProcessInfo.processInfo.hostName)-\(getpid())-\(Identifiers.token(6))"
        self.logger = logger
        self.probe = RedisProbe(redis: redis)
        self.deadlines = ApprovalDeadlines(store: store, claim: lease, logger: logger)
    }

    /// The jobs a worker holds.
    struct Jobs {
        /// Execution id → the job entry running.
        var running: [String: String] = [:]
        /// Execution id → the job entries to run after it, in the order they came (each run then acknowledges its
        /// own; a run with nothing left to do ends at once).
        var next: [String: [String]] = [:]

        /// Every entry held, with its execution.
        var entries: [(executionID: String, entryID: String)] {
            running.map { ($0.key, $0.value) } + next.flatMap { item in item.value.map { (item.key, $0) } }
        }
    }

    /// Executions this worker runs now.
    public var activeCount: Int { active.withLock { $0.running.count } }

    /// Runs until shutdown: reads new jobs, and takes over jobs whose worker died.
    public func run() async throws {
        try await ensureGroup()
        logger.info(
            "worker \(consumer) taking jobs from \(store.keys.shardCount) job streams, \(concurrency) at a time")
        // On graceful shutdown running jobs are cancelled and handed back at once (see runJob), so that another
        // worker resumes them without waiting for the lease to run out.
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { await self.renewLeases() }
                    group.addTask { await self.deadlines.run() }
                    group.addTask { await self.reportStatus() }
                    await self.readLoop(group: &group)
                    group.cancelAll()
                }
            }
        } catch {
            await stopServers()
            await withdrawStatus()
            throw error
        }
        await stopServers()
        await withdrawStatus()
    }

    /// Every 2 s: writes this worker's status to `…:workers` (for `tether top`), drops the statuses of workers silent
    /// for a minute, and samples the waiting gauges (`tether_executions_waiting`, `tether_oldest_waiting_seconds`)
    /// from the waiting set (the deployment's: every worker reports the same).
    private func reportStatus() async {
        TetherMetrics.workerSlots.set(concurrency)
        let started = Identifiers.nowMilliseconds()
        var tick = 0
        while !Task.isCancelled {
            let now = Identifiers.nowMilliseconds()
            let counters = store.counters
            let status = WorkerStatus(
                consumer: consumer, slots: concurrency, busy: activeCount,
                events: counters.events.load(ordering: .relaxed),
                completed: counters.completed.load(ordering: .relaxed),
                failed: counters.failed.load(ordering: .relaxed), startedAt: started, at: now)
            _ = try? await store.redis.send("HSET", store.keys.workers, consumer, status.json.rendered)
            if tick % 30 == 0 { await pruneStatuses(now: now) }
            if let (count, oldest) = try? await store.waiting() {
                TetherMetrics.executionsWaiting.set(count)
                TetherMetrics.oldestWaiting.set(oldest.map { Double(max(0, now - $0)) / 1000 } ?? 0)
            }
            tick += 1
            try? await Task.sleep(for: .seconds(2))
        }
    }

    /// Drops the statuses of workers silent for a minute (killed ones never withdraw theirs).
    private func pruneStatuses(now: Int64) async {
        guard let statuses = try? await store.redis.send("HGETALL", store.keys.workers).stringDictionary else { return }
        for (name, text) in statuses {
            if let status = WorkerStatus(consumer: name, json: text), now - status.at < 60_000 { continue }
            _ = try? await store.redis.send("HDEL", store.keys.workers, name)
        }
    }

    /// Takes this worker's status out of `…:workers` as it stops.
    private func withdrawStatus() async {
        _ = await Task { [store, consumer] in try? await store.redis.send("HDEL", store.keys.workers, consumer) }.value
    }

    /// Stops the MCP servers this worker started.
    private func stopServers() async {
        for server in servers { await server.shutDown() }
    }

    private func ensureGroup() async throws {
        let replies = try await store.redis.send(
            batch: store.keys.shards.map {
                RedisCommand("XGROUP", "CREATE", store.keys.jobs(shard: $0), store.keys.jobsGroup, "0", "MKSTREAM")
            })
        for reply in replies {
            if case .error(let message) = reply, !message.hasPrefix("BUSYGROUP") { throw RedisError(reply: message) }
        }
    }

    private func readLoop(group: inout ThrowingDiscardingTaskGroup<any Error>) async {
        if store.keys.shardCount == 1 {
            await blockingReadLoop(group: &group)
        } else {
            await shardedReadLoop(group: &group)
        }
    }

    /// Takes over jobs whose worker died, every half lease.
    private func reclaimIfDue(
        _ nextReclaim: inout ContinuousClock.Instant, free: Int, group: inout ThrowingDiscardingTaskGroup<any Error>
    ) async throws {
        guard ContinuousClock.now >= nextReclaim else { return }
        nextReclaim = ContinuousClock.now + lease / 2
        for job in try await reclaim(limit: free) {
            logger.info("taking over \(job.executionID) from a worker that stopped renewing its lease")
            start(job.entryID, job.executionID, group: &group)
        }
    }

    /// The read loop over N job streams: reads the streams whose bell rang (and those that gave a full batch, which
    /// may hold more), each once; when none is left, waits for a bell, or a second and then reads them all.
    private func shardedReadLoop(group: inout ThrowingDiscardingTaskGroup<any Error>) async {
        let bell = Doorbell()
        var bells: [RedisSubscriptionHandle] = []
        for shard in store.keys.shards {
            do {
                bells.append(
                    try await store.redis.pubSub.subscribe(store.keys.jobsBell(shard: shard), kind: .shard) { _ in
                        bell.ring(shard)
                    })
            } catch {
                logger.warning("no jobs bell for shard \(shard) (\(error)): reading it every second")
            }
        }
        defer { for handle in bells { handle.cancel() } }
        var nextReclaim = ContinuousClock.now
        var pending = Set(store.keys.shards)
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            if concurrency - activeCount <= 0 {
                try? await Task.sleep(for: .milliseconds(20))
                continue
            }
            pending.formUnion(bell.take())
            if pending.isEmpty {
                pending = await bell.wait(upTo: .seconds(1)) ?? Set(store.keys.shards)
                continue
            }
            var again = Set<Int>()
            do {
                try await reclaimIfDue(&nextReclaim, free: concurrency - activeCount, group: &group)
                for shard in pending.sorted() {
                    let free = concurrency - activeCount
                    if free <= 0 || Task.isCancelled {
                        again.insert(shard)
                        continue
                    }
                    let reply = try await store.redis.send(
                        "XREADGROUP", "GROUP", store.keys.jobsGroup, consumer, "COUNT", free, "STREAMS",
                        store.keys.jobs(shard: shard), ">")
                    let jobs = Self.jobs(reply.array?.first?.array?.last ?? .null)
                    if jobs.count == free { again.insert(shard) }
                    for job in jobs {
                        // Stopping: a job read now goes to another worker untouched (no claim, no fence raised).
                        if Task.isCancelled || Task.isShuttingDownGracefully {
                            await handBack(job.entryID, job.executionID)
                            continue
                        }
                        start(job.entryID, job.executionID, group: &group)
                    }
                }
                pending = again
            } catch is CancellationError {
                break
            } catch {
                logger.warning("reading jobs failed: \(error); retrying")
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// The read loop over the one job stream: `XREADGROUP … BLOCK` on a connection of its own.
    private func blockingReadLoop(group: inout ThrowingDiscardingTaskGroup<any Error>) async {
        var connection: RedisConnection?
        var nextReclaim = ContinuousClock.now
        let jobs = store.keys.jobs(shard: 0)
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let free = concurrency - activeCount
            if free <= 0 {
                try? await Task.sleep(for: .milliseconds(20))
                continue
            }
            do {
                try await reclaimIfDue(&nextReclaim, free: free, group: &group)
                if connection == nil || connection?.isActive == false {
                    connection = try await store.redis.dedicatedConnection(forKey: jobs)
                }
                let reply = try await connection!.sendBlocking(
                    RedisCommand(
                        "XREADGROUP", "GROUP", store.keys.jobsGroup, consumer, "COUNT", free, "BLOCK", 1000, "STREAMS",
                        jobs, ">"))
                for job in Self.jobs(reply.array?.first?.array?.last ?? .null) {
                    start(job.entryID, job.executionID, group: &group)
                }
            } catch is CancellationError {
                break
            } catch {
                logger.warning("reading jobs failed: \(error); retrying")
                // A connection that answered with an error (a slot moved away from its node) is not used again.
                connection?.close()
                connection = nil
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        connection?.close()
    }

    private func start(_ entryID: String, _ executionID: String, group: inout ThrowingDiscardingTaskGroup<any Error>) {
        let fresh = active.withLock { jobs in
            switch jobs.running[executionID] {
            case nil:
                jobs.running[executionID] = entryID
                TetherMetrics.workerSlotsBusy.increment()
                return true
            case entryID:
                return false
            default:
                if jobs.next[executionID]?.contains(entryID) != true {
                    jobs.next[executionID, default: []].append(entryID)
                }
                return false
            }
        }
        guard fresh else { return }
        group.addTask {
            var entryID = entryID
            while true {
                await self.runJob(entryID, executionID)
                let cancelled = Task.isCancelled
                let next = self.active.withLock { jobs -> [String] in
                    var queued = jobs.next.removeValue(forKey: executionID) ?? []
                    guard !cancelled, !queued.isEmpty else {
                        jobs.running.removeValue(forKey: executionID)
                        TetherMetrics.workerSlotsBusy.decrement()
                        return queued
                    }
                    let first = queued.removeFirst()
                    jobs.running[executionID] = first
                    if !queued.isEmpty { jobs.next[executionID] = queued }
                    return [first]
                }
                if cancelled {
                    // Stopping: the entries still queued are handed back like the running one (see runJob).
                    for entry in next { await self.handBack(entry, executionID) }
                    return
                }
                guard let first = next.first else { return }
                entryID = first
            }
        }
    }

    /// Makes a job's entry look expired, so that another worker takes it over now rather than after the lease.
    private func handBack(_ entryID: String, _ executionID: String) async {
        logger.info("handing \(executionID) back for another worker to resume")
        let command = RedisCommand(
            "XCLAIM", store.keys.jobs(for: executionID), store.keys.jobsGroup, consumer, 0, entryID, "IDLE",
            Self.milliseconds(lease),
            "JUSTID")
        // In a task of its own: the caller is cancelled, and the pool refuses to queue cancelled callers.
        _ = await Task { [redis = store.redis] in try? await redis.send(command) }.value
    }

    private func runJob(_ entryID: String, _ executionID: String) async {
        do {
            guard let claim = try await store.claim(executionID, owner: consumer), !claim.status.isTerminal else {
                try await acknowledge(entryID, executionID)
                return
            }
            try await run(executionID, fence: claim.fence, jobEntryID: entryID)
            // Done, or parked (the park script took the entry out already: acknowledging it again changes nothing).
            try await acknowledge(entryID, executionID)
        } catch is CancellationError {
            await handBack(entryID, executionID)
        } catch AppendError.fenced {
            logger.warning("lost the lease of \(executionID) to another worker")
        } catch AppendError.finished, AppendError.notFound {
            try? await acknowledge(entryID, executionID)
        } catch {
            logger.error("job \(executionID) stopped: \(error); it will be taken over after the lease expires")
        }
    }

    /// Runs the execution, and runs it again (from the log) after Redis trouble, while this worker holds the
    /// lease: a Redis restart must not fail an execution nor leave it waiting for the lease to expire. After an
    /// outage it goes on as soon as Redis answers again (``RedisProbe``); an error Redis answered with is retried
    /// with backoff.
    ///
    /// It runs again only while this worker still holds the job's entry: a command whose reply was lost may have
    /// run, and a park that ran took the entry out (the execution is parked, and the decision queues a new job that
    /// any worker may take), so running on then would drive the execution beside its next owner.
    private func run(_ executionID: String, fence: Int, jobEntryID: String) async throws {
        var delay = Duration.milliseconds(100)
        while true {
            do {
                try await runner.run(executionID, fence: fence, jobEntryID: jobEntryID)
                return
            } catch AppendError.diverged {
                // A failover lost entries this run had appended: what the log says now is the truth to go on from.
                TetherMetrics.runsDiverged.increment()
                logger.warning("execution \(executionID): the log lost entries this worker appended; resuming from it")
            } catch let error as RedisError {
                switch error.code {
                case .connectionClosed, .unavailable, .timeout:
                    logger.warning("execution \(executionID): \(error); resuming when Redis answers")
                    try await probe.waitUntilAnswering()
                default:
                    logger.warning("execution \(executionID): \(error); resuming in \(delay)")
                    try await Task.sleep(for: delay)
                    delay = min(delay * 2, .seconds(5))
                }
            }
            while true {
                do {
                    guard try await holds(jobEntryID, executionID) else {
                        logger.info("execution \(executionID): its job was parked or handed on meanwhile")
                        return
                    }
                    break
                } catch let error as RedisError {
                    logger.warning("execution \(executionID): \(error); resuming when Redis answers")
                    try await probe.waitUntilAnswering()
                }
            }
        }
    }

    /// Whether the job's entry is still pending for this worker.
    private func holds(_ entryID: String, _ executionID: String) async throws -> Bool {
        let reply = try await store.redis.send(
            "XPENDING", store.keys.jobs(for: executionID), store.keys.jobsGroup, entryID, entryID, 1, consumer)
        return !(reply.array ?? []).isEmpty
    }

    /// Renews the leases of every job held, every third of the lease, until cancelled; a renewal that fails (Redis
    /// away) is tried at the next round, well before the lease runs out.
    private func renewLeases() async {
        while true {
            do {
                try await EventLoopSleep.sleep(for: lease / 3)
            } catch {
                return  // cancelled: the worker is stopping
            }
            let held = Dictionary(grouping: active.withLock { $0.entries }) { store.keys.shard(of: $0.executionID) }
            for (shard, entries) in held {
                for start in stride(from: 0, to: entries.count, by: 500) {
                    var arguments: [any RedisArgument] = [
                        store.keys.jobs(shard: shard), store.keys.jobsGroup, consumer, 0,
                    ]
                    arguments += entries[start..<min(start + 500, entries.count)].map {
                        $0.entryID as any RedisArgument
                    }
                    arguments.append("JUSTID")
                    _ = try? await store.redis.send(RedisCommand("XCLAIM", arguments: arguments))
                }
            }
        }
    }

    private func acknowledge(_ entryID: String, _ executionID: String) async throws {
        let jobs = store.keys.jobs(for: executionID)
        try await store.redis.send(batch: [
            RedisCommand("XACK", jobs, store.keys.jobsGroup, entryID), RedisCommand("XDEL", jobs, entryID),
        ])
    }

    /// Takes over up to `limit` jobs idle longer than the lease (their worker died); returns them. One round goes
    /// through each shard's whole pending list (each `XAUTOCLAIM` looks at most ten entries per job it may claim),
    /// from where the last round stopped, until it has `limit` jobs or is back at the start.
    func reclaim(limit: Int) async throws -> [(entryID: String, executionID: String)] {
        var taken: [(entryID: String, executionID: String)] = []
        for shard in store.keys.shards where taken.count < limit {
            taken += try await reclaim(shard: shard, limit: limit - taken.count)
        }
        return taken
    }

    private func reclaim(shard: Int, limit: Int) async throws -> [(entryID: String, executionID: String)] {
        guard limit > 0 else { return [] }
        var taken: [(entryID: String, executionID: String)] = []
        var cursor = reclaimCursors.withLock { $0[shard] } ?? "0-0"
        let start = StreamID(cursor) ?? .zero
        // A round that starts at the beginning ends at the end; one that starts further on wraps around once.
        var wrapped = start == .zero
        while taken.count < limit {
            let reply = try await store.redis.send(
                "XAUTOCLAIM", store.keys.jobs(shard: shard), store.keys.jobsGroup, consumer, Self.milliseconds(lease),
                cursor, "COUNT", limit - taken.count)
            let parts = reply.array ?? []
            cursor = parts.first?.string ?? "0-0"
            taken += Self.jobs(parts.count > 1 ? parts[1] : .null)
            reclaimCursors.withLock { [cursor] in $0[shard] = cursor }
            let next = StreamID(cursor) ?? .zero
            if next == .zero {
                if wrapped { break }
                wrapped = true
            } else if wrapped, start != .zero, next >= start {
                break
            }
        }
        return taken
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    static func jobs(_ entries: RESPValue) -> [(entryID: String, executionID: String)] {
        ExecutionStore.parseEntriesRaw(entries).compactMap { entry in
            guard let id = entry.fields["executionId"] else { return nil }
            return (entry.id, id)
        }
    }
}
