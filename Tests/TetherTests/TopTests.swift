import Foundation
import TestSupport
import Testing

@testable import TetherCore

/// `tether top`: the screen from two snapshots (no sockets), then the command against a running deployment.
@Suite("tether top", .serialized, .timeLimit(.minutes(1)))
struct TopTests {
    @Test func theScreenShowsTheQueueTheWaitingTheWorkersAndRatesBetweenTwoSnapshots() {
        let start: Int64 = 1_796_292_000_000
        func worker(_ name: String, events: Int, completed: Int, busy: Int, at: Int64) -> WorkerStatus {
            WorkerStatus(
                consumer: name, slots: 32, busy: busy, events: events, completed: completed, failed: 0,
                startedAt: start, at: at)
        }
        let before = DeploymentStatus(
            at: start + 10_000, queued: 0, running: 3, waiting: 2, oldestWaitingSince: start,
            workers: [worker("w1", events: 1000, completed: 10, busy: 2, at: start + 9_900)])
        let now = DeploymentStatus(
            at: start + 12_000, queued: 4, running: 5, waiting: 2, oldestWaitingSince: start,
            workers: [
                worker("w1", events: 3000, completed: 14, busy: 5, at: start + 11_900),
                worker("w2", events: 50, completed: 0, busy: 1, at: start - 60_000),
            ])
        let screen = now.rendered(previous: before, title: "tether top")
        #expect(screen.contains("queued 4 · running 5 · waiting for approval 2 (oldest 12 s)"))
        // 2,000 events and 4 completions in 2 s; the silent worker is listed, and left out of the totals.
        #expect(screen.contains("1000.0 events/s appended by workers · completed 2.0/s · failed 0.0/s"))
        #expect(screen.contains("workers     1 live · 32 slots · 5 busy"))
        #expect(screen.contains("silent 1m 12s"))
        // The first snapshot has no rates yet.
        #expect(before.rendered(previous: nil, title: "t").contains("(after the next refresh)"))
        #expect(DeploymentStatus.duration(3 * 3_600_000 + 4 * 60_000) == "3h 04m")
        #expect(WorkerStatus(consumer: "w1", json: now.workers[0].json.rendered) == now.workers[0])
    }

    @Test func theCommandReadsARunningDeploymentFromRedis() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await harness.create("email ivy@example.com")
        _ = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        // The worker writes its status every 2 s; the execution parks.
        #expect(
            try await eventually(10) {
                let status = try await DeploymentStatus.read(harness.store)
                return status.waiting == 1 && status.workers.count == 1
            })
        let (code, output) = try runTether("top", harness, arguments: ["--once", "--interval", "0.3"])
        #expect(code == 0)
        #expect(output.contains("waiting for approval 1 (oldest"))
        // (Busy slots as of the worker's last write: 1 if that was before the execution parked.)
        #expect(output.contains("workers     1 live · 64 slots · "))
        #expect(output.contains("events/s appended by workers"))
    }
}
