import ArgumentParser
import Foundation
import RedisKit
import Synchronization
import TetherClient

extension StreamBench {
    /// `--idle N`: N clients, each streaming its own execution of the demo agent, held open once the execution is
    /// suspended waiting for approval (the stream then carries only heartbeats). Reports the gateway's memory per
    /// idle client, its Redis connections, and its CPU while they idle.
    func measureIdle(
        _ count: Int, _ http: HTTPClient, _ redis: any RedisClientProtocol, into report: inout BenchReport
    ) async throws {
        let rssBefore = residentKiB() ?? 0
        let clock = ContinuousClock()
        let start = clock.now
        let ended = EndedStreams()
        let lanes = max(1, min(idleConcurrency, count))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    for _ in stride(from: lane, to: count, by: lanes) { try await openIdle(http, ended: ended) }
                }
            }
            try await group.waitForAll()
        }
        let opening = clock.now - start
        let openSeconds = Double(opening.components.seconds) + Double(opening.components.attoseconds) / 1e18
        // Let the burst's garbage go (and the first heartbeats start) before reading the memory.
        try await Task.sleep(for: .seconds(2))
        let rssAfter = residentKiB() ?? 0
        let connections = try await gatewayConnections(redis)
        let cpuBefore = CPUSnapshot(self)
        try await Task.sleep(for: .seconds(idleSeconds))
        let rssHeld = residentKiB() ?? 0
        let stillOpen = count - ended.count.withLock { $0 }
        report.set("idle.clients", count)
        report.set("idle.openSeconds", openSeconds)
        report.set("idle.stillOpen", stillOpen)
        report.set("idle.gatewayRSSBeforeMiB", Double(rssBefore) / 1024)
        report.set("idle.gatewayRSSMiB", Double(rssAfter) / 1024)
        report.set("idle.gatewayRSSAfterHoldMiB", Double(rssHeld) / 1024)
        report.set("idle.perClientKiB", Double(rssAfter - rssBefore) / Double(max(count, 1)))
        report.set("idle.gatewayRedisConnections", connections)
        report.set("idle.holdSeconds", idleSeconds)
        report.line(
            String(
                format: "%d idle clients on suspended executions, opened in %.1f s (%.0f/s); %d still open after %d s",
                count, openSeconds, Double(count) / max(openSeconds, 1e-3), stillOpen, idleSeconds))
        report.line(
            String(
                format:
                    "  gateway memory (RSS): %.0f MiB before, %.0f MiB with them all open (%.1f KiB per client), %.0f MiB after %d s",
                Double(rssBefore) / 1024, Double(rssAfter) / 1024,
                Double(rssAfter - rssBefore) / Double(max(count, 1)), Double(rssHeld) / 1024, idleSeconds))
        report.line("  gateway Redis connections: \(connections)")
        // No events are delivered: per event figures would mean nothing, the share of a core does.
        CPUSnapshot(self).report(since: cpuBefore, seconds: Double(idleSeconds), events: 0, into: &report)
        guard stillOpen == count else {
            throw ValidationError("\(count - stillOpen) idle streams ended before the end of the hold")
        }
    }

    /// Creates one execution that asks for approval, and returns once its stream has carried the approval request;
    /// the stream stays open in a task of its own, and counts itself in `ended` if it ends.
    private func openIdle(_ http: HTTPClient, ended: EndedStreams) async throws {
        let body = Array(#"{"messages":[{"role":"user","content":"Please send an email to bench@example.com"}]}"#.utf8)
        let headers = [("Authorization", "Bearer \(key)"), ("Content-Type", "application/json")]
        let waiting = OnceContinuation()
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            waiting.set(continuation)
            let probe = StreamProbe(expected: 16, start: 0, final: "tool-approval-request") {
                waiting.resume(with: .success(()))
            }
            Task {
                let failure: any Error
                do {
                    let (status, _) = try await http.stream(.POST, "/run/api/executions", headers: headers, body: body)
                    {
                        probe.take($0)
                    }
                    failure = ValidationError("the stream ended (status \(status)) before its approval request")
                } catch {
                    failure = error
                }
                ended.count.withLock { $0 += 1 }
                waiting.resume(with: .failure(failure))
            }
        }
    }
}

/// How many idle streams have ended (they should not, while they are held).
final class EndedStreams: Sendable {
    let count = Mutex(0)
}

/// A continuation resumed once, by whichever comes first (the approval request, or the stream's end).
final class OnceContinuation: Sendable {
    private let continuation = Mutex<CheckedContinuation<Void, any Error>?>(nil)

    func set(_ continuation: CheckedContinuation<Void, any Error>) { self.continuation.withLock { $0 = continuation } }

    func resume(with result: Result<Void, any Error>) { continuation.withLock { $0.take() }?.resume(with: result) }
}
