import Logging
import RedisKit
import TetherCore

extension AgentRunner {
    /// The reason of the decision the system makes when nobody answered an approval request in time.
    public static let approvalTimedOut = "approval timed out"

    /// One approval request per call, in one append; the execution waits (`suspended`) from the last of them. Each
    /// carries its deadline (`expiresAt`), so that whichever worker waits for it enforces the same one.
    func approvalRequests(_ ids: [String], _ state: AgentState, timeout: Int) -> [NewEvent] {
        let nowMs = Identifiers.nowMilliseconds()
        let now = Identifiers.isoTimestamp(milliseconds: nowMs)
        let expires = JSON.string(Identifiers.isoTimestamp(milliseconds: nowMs + Int64(timeout) * 1000))
        return ids.enumerated().map { index, id in
            let call = state.turns.last?.calls.first { $0.id == id }
            let name = JSON.string(call?.name ?? "")
            let input = call?.input ?? .object([:])
            let approvalID = JSON.string("appr_" + Identifiers.token(16))
            let request: JSON = [
                "approvalId": approvalID, "toolCallId": .string(id), "toolName": name, "input": input,
                "requestedAt": .string(now), "expiresAt": expires,
            ]
            return NewEvent(
                .approvalRequest,
                [
                    "approvalId": approvalID, "toolCallId": .string(id), "toolName": name, "input": input,
                    "expiresAt": expires,
                ],
                status: index == ids.count - 1 ? .suspended : nil, approvalField: (id, request.rendered))
        }
    }

    /// Runs the calls concurrently; each result is appended as soon as it comes.
    ///
    /// Their `tool-started` events go through the fenced append first, in one append: a worker that lost its lease
    /// starts nothing. A call started before (its worker died before its result was logged) runs again with the
    /// same idempotency key: at-least-once. A call whose result is logged never runs again (the step logic only
    /// runs calls without one). When the run is cancelled (the worker is stopping, or the execution was cancelled)
    /// no result is appended: the call stays started, for the next owner to run again.
    func runTools(_ ids: [String], _ run: ExecutionRun, tools: [String: any AgentTool]) async throws {
        let headers = try await run.forwardedHeaders()
        var logger = self.logger
        logger[metadataKey: "execution"] = .string(run.executionID)
        let jobs: [(call: AgentState.Call, tool: any AgentTool)] = ids.compactMap { id in
            guard let call = run.call(id), let tool = tools[call.name] else { return nil }
            return (call, tool)
        }
        if jobs.isEmpty { return }
        try await run.append(
            jobs.map { job in
                NewEvent(
                    .toolStarted,
                    [
                        "toolCallId": .string(job.call.id), "toolName": .string(job.call.name),
                        "attempt": .number(Double(job.call.starts + 1)),
                    ])
            })
        let executionID = run.executionID
        try await withThrowingTaskGroup(of: (String, ToolOutcome).self) { group in
            for job in jobs {
                let attempt = job.call.starts + 1
                if attempt > 1 {
                    logger.warning(
                        "tool \(job.call.name) (\(job.call.id)) started before without a result: running it again (attempt \(attempt))"
                    )
                }
                let context = ToolContext(
                    executionID: executionID, toolCallID: job.call.id, forwardedHeaders: headers,
                    deadline: .now + job.tool.timeout, logger: logger, attempt: attempt)
                let input = job.call.input ?? .object([:])
                group.addTask { (job.call.id, await job.tool.run(input, context: context)) }
            }
            for try await (id, outcome) in group {
                try Task.checkCancellation()
                switch outcome {
                case .output(let output):
                    try await run.append([NewEvent(.toolOutput, ["toolCallId": .string(id), "output": output])])
                case .failure(let message):
                    try await run.append([
                        NewEvent(.toolError, ["toolCallId": .string(id), "errorText": .string(message)])
                    ])
                }
            }
        }
    }

    /// Subscribes to the approvals channel first, then reads the log's new entries (where the decide script puts each
    /// decision), then waits for an announcement: a decision made at any moment is seen. A re-read every few
    /// seconds covers an announcement lost to a reconnect. A request whose deadline passed is denied by the system
    /// ("approval timed out"), through the same decide script, so a human's decision at the same moment wins or
    /// loses cleanly. Returns once one of `ids` is decided.
    func waitForDecisions(_ ids: [String], _ run: ExecutionRun) async throws {
        waiting.add(1)
        defer { waiting.add(-1) }
        let subscription = try await store.redis.subscriber.subscribe(
            store.keys.approvalsChannel(run.executionID), bufferingPolicy: .bufferingNewest(16))
        defer { subscription.cancel() }
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in subscription { wake.yield() }
            }
            let deadline = ids.compactMap { run.call($0)?.approvalDeadline }.min()
            group.addTask {
                while true {
                    let untilDeadline = deadline.map { max(0, $0 - Identifiers.nowMilliseconds()) } ?? 5000
                    try await Task.sleep(for: .milliseconds(min(5000, untilDeadline + 1)))
                    wake.yield()
                }
            }
            defer { group.cancelAll() }
            wake.yield()
            for await _ in wakeups {
                try Task.checkCancellation()
                // A failed read or decision (Redis restarting) is simply tried again at the next wake-up.
                try? await run.readNew()
                if ids.contains(where: { run.call($0)?.decision != nil }) || run.state.finished { return }
                let now = Identifiers.nowMilliseconds()
                for id in ids where (run.call(id)?.approvalDeadline ?? .max) <= now {
                    _ = try? await store.decide(
                        run.executionID, toolCallID: id, approved: false, reason: Self.approvalTimedOut,
                        decidedBy: "system")
                    wake.yield()
                }
            }
            throw CancellationError()
        }
    }
}
