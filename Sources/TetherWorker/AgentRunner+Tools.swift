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
        let logger = run.logger
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
            let names = Dictionary(jobs.map { ($0.call.id, $0.call.name) }, uniquingKeysWith: { first, _ in first })
            for try await (id, outcome) in group {
                try Task.checkCancellation()
                TetherMetrics.toolCalls(names[id] ?? "unknown", outcome.metricsOutcome).increment()
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

    /// Parks the execution until one of `ids` is decided (see ``Scripts/park``), under the earliest deadline of
    /// their requests; returns `true` when it is parked (the run ends here: the decision, a cancel or the deadline
    /// queues the job again), `false` when a decision came first (it is read in, and the run goes on).
    func park(_ ids: [String], _ run: ExecutionRun, jobEntryID: String) async throws -> Bool {
        let deadline =
            ids.compactMap { run.call($0)?.approvalDeadline }.min() ?? Identifiers.nowMilliseconds() + 86_400_000
        switch try await store.park(
            run.executionID, fence: run.fence, jobEntryID: jobEntryID, deadline: deadline, toolCallIDs: ids)
        {
        case .parked:
            run.logger.debug("execution \(run.executionID) parked until a decision on \(ids)")
            return true
        case .decided:
            try await run.readNew()
            return false
        }
    }
}
