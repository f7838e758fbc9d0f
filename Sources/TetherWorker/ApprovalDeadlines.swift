import Logging
import TetherCore

/// Denies the approval requests nobody answered in time, for parked executions (which no worker holds): every
/// worker polls the deadline sets (one per shard), and each overdue execution is claimed by one of them (see
/// ``Scripts/claimDeadlines``); if that worker dies, the claim runs out and another takes it. The denial goes through
/// the decide script, like a human's, so a human deciding at the same moment wins or loses cleanly, and it queues
/// the execution's job again.
struct ApprovalDeadlines: Sendable {
    let store: ExecutionStore
    /// How long a claim on a deadline lasts.
    let claim: Duration
    let logger: Logger

    /// Time between polls.
    static let interval = Duration.milliseconds(500)
    /// Most executions claimed per poll.
    static let batch = 100

    /// Polls until cancelled.
    func run() async {
        while true {
            do {
                try await Task.sleep(for: Self.interval)
            } catch {
                return
            }
            // A poll that fails (Redis away) is simply tried again: claims that were taken run out by themselves.
            _ = try? await poll()
        }
    }

    /// Claims the overdue executions, and denies their overdue requests; returns how many it claimed.
    @discardableResult
    func poll() async throws -> Int {
        let now = Identifiers.nowMilliseconds()
        let claimEnd = now + WorkerService.milliseconds(claim)
        var claimed = 0
        for shard in store.keys.shards {
            claimed += try await poll(shard: shard, now: now, claimEnd: claimEnd)
        }
        return claimed
    }

    /// ``poll()`` of one shard's deadline set.
    private func poll(shard: Int, now: Int64, claimEnd: Int64) async throws -> Int {
        var claimed = 0
        while true {
            let due = try await store.claimDeadlines(shard: shard, now: now, limit: Self.batch, claimEnd: claimEnd)
            // One that fails (a stale decision, Redis trouble) comes due again when its claim runs out; the rest of
            // the batch goes on.
            for id in due {
                do {
                    try await expire(id, now: now, claimEnd: claimEnd)
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    logger.warning("execution \(id): expiring its approvals failed: \(error); retried after the claim")
                }
            }
            claimed += due.count
            if due.count < Self.batch { return claimed }
        }
    }

    private func expire(_ id: String, now: Int64, claimEnd: Int64) async throws {
        var decided = false
        var next: Int64?
        for entry in try await store.approvals(id) where entry.decision == nil {
            guard let expires = entry.request["expiresAt"]?.stringValue.flatMap(Identifiers.milliseconds(isoTimestamp:))
            else { continue }
            if expires > now {
                next = min(next ?? expires, expires)
                continue
            }
            let outcome = try await store.decide(
                id, toolCallID: entry.toolCallId, approved: false, reason: AgentRunner.approvalTimedOut,
                decidedBy: "system")
            if outcome == .recorded {
                decided = true
                logger.info("execution \(id): approval of \(entry.toolCallId) timed out; denied")
            }
        }
        // A recorded decision took the execution out of the set (and queued its job); else the claim is settled.
        if !decided { try await store.settleDeadline(id, claimEnd: claimEnd, next: next) }
    }
}
