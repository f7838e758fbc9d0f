import RedisKit

/// One worker process's status, as it writes it to `…:workers` every 2 s.
public struct WorkerStatus: Sendable, Equatable {
    /// Its consumer name in the jobs group (`host-pid-token`).
    public var consumer: String
    /// Slots (`workers.concurrency`) and those running an execution.
    public var slots: Int
    /// See ``slots``.
    public var busy: Int
    /// Events it appended, and executions it finished, since it started.
    public var events: Int
    /// See ``events``.
    public var completed: Int
    /// See ``events``.
    public var failed: Int
    /// When it started and when it wrote this, in ms since the epoch.
    public var startedAt: Int64
    /// See ``startedAt``.
    public var at: Int64

    /// Makes a status.
    public init(
        consumer: String, slots: Int, busy: Int, events: Int, completed: Int, failed: Int, startedAt: Int64, at: Int64
    ) {
        self.consumer = consumer
        self.slots = slots
        self.busy = busy
        self.events = events
        self.completed = completed
        self.failed = failed
        self.startedAt = startedAt
        self.at = at
    }

    /// The JSON it is stored as.
    public var json: JSON {
        [
            "slots": .number(Double(slots)), "busy": .number(Double(busy)), "events": .number(Double(events)),
            "completed": .number(Double(completed)), "failed": .number(Double(failed)),
            "startedAt": .number(Double(startedAt)), "at": .number(Double(at)),
        ]
    }

    /// Reads a stored status; `nil` when it is not one.
    public init?(consumer: String, json text: String) {
        guard let json = try? JSON.parse(text) else { return nil }
        func int(_ key: String) -> Int? { json[key]?.numberValue.map { Int($0) } }
        guard let slots = int("slots"), let busy = int("busy"), let at = int("at") else { return nil }
        self.init(
            consumer: consumer, slots: slots, busy: busy, events: int("events") ?? 0, completed: int("completed") ?? 0,
            failed: int("failed") ?? 0, startedAt: Int64(int("startedAt") ?? 0), at: Int64(at))
    }
}

/// A deployment at one moment, read from Redis alone (`tether top`): the jobs queued and running, the executions
/// waiting for a human, and the workers' statuses.
public struct DeploymentStatus: Sendable, Equatable {
    /// When it was read, ms since the epoch.
    public var at: Int64
    /// Jobs not yet taken by a worker (the group's lag), and those a worker holds (its pending entries).
    public var queued: Int
    /// See ``queued``.
    public var running: Int
    /// Executions parked waiting for a decision, and since when the oldest waits.
    public var waiting: Int
    /// See ``waiting``.
    public var oldestWaitingSince: Int64?
    /// The workers that wrote a status, newest first.
    public var workers: [WorkerStatus]

    /// A worker silent this long is shown as such and left out of the totals.
    public static let silentAfterMilliseconds: Int64 = 10_000

    /// Makes a status.
    public init(
        at: Int64, queued: Int, running: Int, waiting: Int, oldestWaitingSince: Int64?, workers: [WorkerStatus]
    ) {
        self.at = at
        self.queued = queued
        self.running = running
        self.waiting = waiting
        self.oldestWaitingSince = oldestWaitingSince
        self.workers = workers
    }

    /// Reads it with one round trip (one per master on a cluster, concurrently).
    public static func read(_ store: ExecutionStore) async throws -> DeploymentStatus {
        let keys = store.keys
        let groups = keys.shards.map { RedisCommand("XINFO", "GROUPS", keys.jobs(shard: $0)) }
        let replies = try await store.redis.send(
            batch: [RedisCommand("HGETALL", keys.workers)] + groups + store.waitingCommands)
        var queued = 0
        var running = 0
        for reply in replies[1...keys.shardCount] {
            for group in reply.array ?? [] {
                let fields = group.array ?? []
                var index = 0
                var name: String?
                var lag = 0
                var pending = 0
                while index + 1 < fields.count {
                    switch fields[index].string {
                    case "name": name = fields[index + 1].string
                    case "lag": lag = fields[index + 1].int ?? 0
                    case "pending": pending = fields[index + 1].int ?? 0
                    default: break
                    }
                    index += 2
                }
                if name == keys.jobsGroup {
                    queued += lag
                    running += pending
                }
            }
        }
        let waiting = ExecutionStore.waiting(replies[(1 + keys.shardCount)...])
        let workers = (replies[0].stringDictionary ?? [:]).compactMap { WorkerStatus(consumer: $0.key, json: $0.value) }
            .sorted { ($0.at, $0.consumer) > ($1.at, $1.consumer) }
        return DeploymentStatus(
            at: Identifiers.nowMilliseconds(), queued: queued, running: running, waiting: waiting.count,
            oldestWaitingSince: waiting.oldestSince, workers: workers)
    }

    /// The screen of `tether top`: this status, with rates since `previous` (the same workers' counters then).
    public func rendered(previous: DeploymentStatus?, title: String) -> String {
        var lines: [String] = [title + " · " + Identifiers.isoTimestamp(milliseconds: at)]
        var executions = "executions  queued \(queued) · running \(running) · waiting for approval \(waiting)"
        if let since = oldestWaitingSince { executions += " (oldest \(Self.duration(at - since)))" }
        lines.append(executions)
        let live = workers.filter { at - $0.at < Self.silentAfterMilliseconds }
        let before = Dictionary(
            (previous?.workers ?? []).map { ($0.consumer, $0) }, uniquingKeysWith: { first, _ in first })
        func rate(_ worker: WorkerStatus, _ value: (WorkerStatus) -> Int) -> Double? {
            guard let old = before[worker.consumer], worker.at > old.at, worker.startedAt == old.startedAt else {
                return nil
            }
            return Double(value(worker) - value(old)) * 1000 / Double(worker.at - old.at)
        }
        let eventRates = live.compactMap { rate($0, \.events) }
        let completedRates = live.compactMap { rate($0, \.completed) }
        let failedRates = live.compactMap { rate($0, \.failed) }
        if eventRates.isEmpty {
            lines.append("rates       (after the next refresh)")
        } else {
            lines.append(
                "rates       \(Self.number(eventRates.reduce(0, +))) events/s appended by workers · completed "
                    + "\(Self.number(completedRates.reduce(0, +)))/s · failed \(Self.number(failedRates.reduce(0, +)))/s"
            )
        }
        lines.append(
            "workers     \(live.count) live · \(live.map(\.slots).reduce(0, +)) slots · "
                + "\(live.map(\.busy).reduce(0, +)) busy")
        if !workers.isEmpty {
            lines.append("")
            lines.append(Self.row(["WORKER", "SLOTS", "BUSY", "EVENTS/S", "COMPLETED", "FAILED", "UP", "SEEN"]))
            for worker in workers {
                let silent = at - worker.at >= Self.silentAfterMilliseconds
                lines.append(
                    Self.row([
                        worker.consumer, String(worker.slots), String(worker.busy),
                        rate(worker, \.events).map(Self.number) ?? "-", String(worker.completed), String(worker.failed),
                        Self.duration(at - worker.startedAt),
                        silent ? "silent \(Self.duration(at - worker.at))" : "\(Self.duration(at - worker.at)) ago",
                    ]))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func row(_ cells: [String]) -> String {
        let widths = [36, 6, 6, 10, 10, 8, 9, 12]
        return zip(cells, widths).enumerated().map { index, pair in
            let (cell, width) = pair
            let pad = String(repeating: " ", count: max(0, width - cell.count))
            return index == 0 ? cell + pad : pad + cell
        }.joined(separator: " ")
    }

    static func number(_ value: Double) -> String {
        let tenths = (value * 10).rounded()
        return String(Int(tenths) / 10) + "." + String(abs(Int(tenths)) % 10)
    }

    /// `850 ms`, `12 s`, `5m 12s`, `3h 04m`.
    static func duration(_ milliseconds: Int64) -> String {
        let ms = max(0, milliseconds)
        if ms < 1000 { return "\(ms) ms" }
        let seconds = ms / 1000
        if seconds < 60 { return "\(seconds) s" }
        if seconds < 3600 { return "\(seconds / 60)m \(seconds % 60)s" }
        let minutes = (seconds / 60) % 60
        return "\(seconds / 3600)h \(minutes < 10 ? "0" : "")\(minutes)m"
    }
}
