import NIOCore
import NIOPosix
import RedisKit
import Synchronization
import TestSupport
import Testing
import TetherCore

@testable import TetherWorker

@Suite("Token pacing", .timeLimit(.minutes(2)))
struct PacingTests {
    @Test func thePacerRunsActionsInOrderAfterTheDelayOnTheLoopThatQueuedThem() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { group.shutdownGracefully { _ in } }
        let pacer = Pacer(delay: .milliseconds(30), group: group)
        let loop = group.next()
        let runs = Mutex<[(index: Int, late: TimeAmount, onLoop: Bool)]>([])
        let start = NIODeadline.now()
        // Queued from the loop, 10 ms apart: each runs 30 ms after its own queueing, in order.
        try await loop.submit {
            for index in 0..<5 {
                loop.scheduleTask(in: .milliseconds(Int64(index * 10))) {
                    let queued = NIODeadline.now()
                    pacer.after {
                        let record = (index, NIODeadline.now() - queued, loop.inEventLoop)
                        runs.withLock { $0.append(record) }
                    }
                }
            }
        }.get()
        // Queued from outside any loop: still runs, on one of the group's loops.
        let outside = Mutex(false)
        pacer.after { outside.withLock { $0 = MultiThreadedEventLoopGroup.currentEventLoop != nil } }
        #expect(try await eventually { runs.withLock { $0.count } == 5 && outside.withLock { $0 } })
        let recorded = runs.withLock { $0 }
        #expect(recorded.map(\.index) == [0, 1, 2, 3, 4])
        for run in recorded {
            #expect(run.late >= .milliseconds(30), "ran before its delay: \(run)")
            #expect(run.onLoop)
        }
        #expect(NIODeadline.now() - start >= .milliseconds(70))
    }

    /// A paced demo turn: the emitter hands tokens to the recorder, which appends them.
    struct PacedTurn {
        let recorder: TurnRecorder
        let emitter: PacedEmitter

        func run() async throws {
            try await withTaskCancellationHandler {
                try await emitter.run()
            } onCancel: {
                emitter.cancel()
            }
            _ = try await recorder.finish()
        }
    }

    /// A started execution claimed by this test, and a turn of `count` tokens streamed into it `delay` apart.
    func turn(_ harness: Harness, count: Int, delay: TimeAmount) async throws -> (
        id: String, tokens: [String], streamer: PacedTurn
    ) {
        let stream = try await harness.create("hi")
        stream.close()
        let id = stream.executionID
        let claim = try #require(try await harness.store.claim(id, owner: "test"))
        let tokens = (0..<count).map { "t\($0) " }
        let recorder = TurnRecorder(
            store: harness.store, executionID: id, fence: claim.fence, turnID: "turn_test", after: nil)
        let emitter = PacedEmitter(events: tokens.map { .textDelta($0) }, sink: recorder, pacer: Pacer(delay: delay))
        return (id, tokens, PacedTurn(recorder: recorder, emitter: emitter))
    }

    func texts(_ harness: Harness, _ id: String) async throws -> [String] {
        try await harness.store.allEvents(id).filter { $0.type == EventType.text.rawValue }.map {
            try JSON.parse($0.data)["text"]?.stringValue ?? ""
        }
    }

    @Test func aTurnWithNothingToSendReturnsAndCompletesItsPromise() async throws {
        // A turn with no tokens: its promise must not leak (a debug build traps on a promise released uncompleted).
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let (id, _, streamer) = try await turn(harness, count: 0, delay: .milliseconds(2))
        try await streamer.run()
        #expect(try await texts(harness, id).isEmpty)
    }

    @Test func aStreamedTurnAppendsEveryTokenInOrderOnePerEntry() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let (id, tokens, streamer) = try await turn(harness, count: 40, delay: .milliseconds(2))
        try await streamer.run()
        #expect(try await texts(harness, id) == tokens)
    }

    @Test func cancellingATurnStopsItsTokens() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let (id, tokens, streamer) = try await turn(harness, count: 100, delay: .milliseconds(20))
        let running = Task { try await streamer.run() }
        #expect(try await eventually { try await texts(harness, id).count >= 3 })
        running.cancel()
        await #expect(throws: CancellationError.self) { try await running.value }
        // At most the append in flight when cancelled lands after it; then nothing more.
        let afterCancel = try await texts(harness, id).count
        try await Task.sleep(for: .milliseconds(200))
        let later = try await texts(harness, id)
        #expect(later.count <= afterCancel + 1)
        #expect(later.count < tokens.count)
        #expect(later == Array(tokens.prefix(later.count)))
    }

    @Test func aTakeoverEndsTheTurnAsFenced() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let (id, tokens, streamer) = try await turn(harness, count: 100, delay: .milliseconds(10))
        let running = Task { try await streamer.run() }
        #expect(try await eventually { try await texts(harness, id).count >= 3 })
        _ = try #require(try await harness.store.claim(id, owner: "another worker"))
        await #expect(throws: AppendError.fenced) { try await running.value }
        let stored = try await texts(harness, id)
        #expect(stored.count < tokens.count)
        #expect(stored == Array(tokens.prefix(stored.count)))
    }

    @Test func aBurstOfEventsIsStoredInOrderInFewAppends() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let stream = try await harness.create("hi")
        stream.close()
        let claim = try #require(try await harness.store.claim(stream.executionID, owner: "test"))
        let recorder = TurnRecorder(
            store: harness.store, executionID: stream.executionID, fence: claim.fence, turnID: "turn_burst", after: nil)
        let tokens = (0..<2000).map { "b\($0) " }
        var last: EventLoopFuture<Void>?
        for token in tokens { last = recorder.emit(.textDelta(token)) }
        try await last?.get()
        let outcome = try await recorder.finish()
        #expect(outcome.count == 2000)
        #expect(outcome.text == tokens.joined())
        #expect(try await texts(harness, stream.executionID) == tokens)
        // Every event is its own entry, with the turn and part it belongs to.
        let first = try #require(
            try await harness.store.allEvents(stream.executionID).first { $0.type == EventType.text.rawValue })
        #expect(first.json["turnId"]?.stringValue == "turn_burst")
        #expect(first.json["partId"]?.stringValue == "p1")
    }
}
