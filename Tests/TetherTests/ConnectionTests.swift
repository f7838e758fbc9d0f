import Foundation
import NIOHTTP1
import TestSupport
import Testing
import TetherClient
import TetherCore

@testable import TetherGateway

@Suite("Connections: deadlines for slow clients, keep-alive after streams", .timeLimit(.minutes(3)))
struct ConnectionTests {
    static func withDeadlines(_ seconds: Double) -> (inout TetherConfig) -> Void {
        { config in
            config.http.headerTimeoutSeconds = seconds
            config.http.bodyTimeoutSeconds = seconds
            config.http.idleTimeoutSeconds = seconds
        }
    }

    @Test func halfSentHeadersAreClosedWithinTheHeaderDeadline() async throws {
        let harness = try await Harness.start(withWorker: false) {
            $0.http.headerTimeoutSeconds = 0.5
            $0.http.idleTimeoutSeconds = 30
        }
        defer { harness.stop() }
        let connection = try await RawConnection.open(port: harness.port)
        try await connection.send("POST /run/api/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
        let closed = try await connection.closedWithin(.seconds(5))
        let after = try #require(closed, "a half-sent request was still connected after 5 s")
        #expect(after >= .milliseconds(400))
    }

    @Test func aBodyThatStopsIsClosedWithinTheBodyDeadline() async throws {
        let harness = try await Harness.start(withWorker: false) {
            $0.http.bodyTimeoutSeconds = 0.5
            $0.http.idleTimeoutSeconds = 30
        }
        defer { harness.stop() }
        let connection = try await RawConnection.open(port: harness.port)
        try await connection.send(
            "POST /run/api/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(harness.token)\r\n"
                + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"messages\":")
        let closed = try await connection.closedWithin(.seconds(5))
        #expect(closed != nil, "a request whose body stopped was still connected after 5 s")
    }

    @Test func anIdleKeepAliveConnectionIsClosedAfterTheIdleDeadline() async throws {
        let harness = try await Harness.start(withWorker: false) { $0.http.idleTimeoutSeconds = 0.5 }
        defer { harness.stop() }
        let connection = try await KeepAliveConnection.open(port: harness.port)
        #expect(try await connection.send(.GET, "/healthz").status == 200)
        // Within the deadline the connection serves the next request.
        try await Task.sleep(for: .milliseconds(100))
        #expect(try await connection.send(.GET, "/healthz").status == 200)
        let raw = try await RawConnection.open(port: harness.port)
        let closed = try await raw.closedWithin(.seconds(5))
        #expect(closed != nil, "a connection that sent nothing was still open after 5 s")
        connection.close()
    }

    @Test func anOpenStreamOutlivesEveryDeadline() async throws {
        // Deadlines short enough to pass several times over, long enough that the decision's own fresh connection
        // (subject to them too) is not cut on a loaded machine.
        let harness = try await Harness.start(configure: Self.withDeadlines(1))
        defer { harness.stop() }
        let stream = try await harness.create("Please send an email to bob@example.com")
        let frames = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        let toolCallID = try #require(frames.last?.typed?["toolCallId"]?.stringValue)
        // Three and a half times every deadline, with nothing sent either way.
        try await Task.sleep(for: .milliseconds(3500))
        #expect(try await harness.decide(stream.executionID, toolCallID, approved: true).status == 200)
        let rest = try await readFrames(stream) { _ in false }
        #expect(rest.last?.finishReason == "stop")
    }

    @Test func aKeptAliveConnectionServesTheNextRequestAfterEveryStream() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let connection = try await KeepAliveConnection.open(port: harness.port)
        defer { connection.close() }
        let headers = harness.auth() + [("Content-Type", "application/json")]
        var failures = 0
        for round in 0..<500 {
            do {
                let created = try await connection.send(
                    .POST, "/run/api/executions", headers: headers,
                    body: #"{"messages":[{"role":"user","content":"hi"}]}"#)
                #expect(created.status == 200)
                #expect(created.headers["Connection"].first?.lowercased() != "close")
                let id = created.headers["x-workflow-run-id"].first ?? ""
                #expect(String(decoding: created.body, as: UTF8.self).contains("\"finish_reason\":\"stop\""))
                let status = try await connection.send(.GET, "/run/api/executions/\(id)", headers: harness.auth())
                #expect(status.status == 200)
            } catch {
                failures += 1
                Issue.record("round \(round): \(error)")
                break
            }
        }
        #expect(failures == 0)
    }

    @Test func aClientThatLeavesAStreamIsNoticed() async throws {
        let harness = try await Harness.start()
        defer { harness.stop() }
        let stream = try await harness.create("Please send an email to carol@example.com")
        _ = try await readFrames(stream) { $0.contains { $0.type == "tool-approval-request" } }
        #expect(harness.gateway.tailer.watchedCount == 1)
        stream.close()
        #expect(try await eventually(5) { harness.gateway.tailer.watchedCount == 0 })
    }
}

@Suite("Connection deadlines (state machine)")
struct ConnectionTimeoutsTests {
    typealias Machine = ConnectionTimeouts

    @Test func aRequestMovesFromIdleThroughHeadAndBodyToAnswering() {
        var machine = Machine()
        #expect(machine.start() == .schedule(.idle))
        #expect(machine.bytesReceived() == .schedule(.header))
        #expect(machine.bytesReceived() == .none)
        #expect(machine.headReceived() == .schedule(.body))
        #expect(machine.endReceived() == .cancel)
        #expect(machine.state == .answering(next: .nothing))
        // While answering (a stream), no deadline fires.
        #expect(machine.deadlinePassed() == .none)
        #expect(machine.responseEnded() == .schedule(.idle))
        #expect(machine.deadlinePassed() == .close)
        #expect(machine.state == .closed)
    }

    @Test func eachWaitingStateClosesWhenItsDeadlinePasses() {
        var head = Machine()
        _ = head.bytesReceived()
        #expect(head.deadlinePassed() == .close)
        var body = Machine()
        _ = body.headReceived()
        #expect(body.deadlinePassed() == .close)
    }

    @Test func aResponseBeforeTheBodyEndsKeepsTheBodyDeadlineThenIdles() {
        var machine = Machine()
        _ = machine.bytesReceived()
        _ = machine.headReceived()
        #expect(machine.responseEnded() == .none)
        #expect(machine.state == .readingBody(answered: true))
        #expect(machine.endReceived() == .schedule(.idle))
    }

    @Test func pipelinedRequestsStartTheirDeadlinesWhenTheResponseBeforeThemEnds() {
        var machine = Machine()
        _ = machine.bytesReceived()
        _ = machine.headReceived()
        _ = machine.endReceived()
        // The next request's first bytes, then its head, arrive during the answer: no deadline yet.
        #expect(machine.bytesReceived() == .none)
        #expect(machine.state == .answering(next: .head))
        #expect(machine.responseEnded() == .schedule(.header))
        var second = Machine()
        _ = second.headReceived()
        _ = second.endReceived()
        #expect(second.headReceived() == .none)
        #expect(second.responseEnded() == .schedule(.body))
        var third = Machine()
        _ = third.headReceived()
        _ = third.endReceived()
        _ = third.headReceived()
        #expect(third.endReceived() == .none)
        #expect(third.state == .answering(next: .complete))
        #expect(third.responseEnded() == .none)
        #expect(third.state == .answering(next: .nothing))
    }

    @Test func aClosedConnectionCancelsItsTimerAndIgnoresEverything() {
        var machine = Machine()
        _ = machine.bytesReceived()
        #expect(machine.closed() == .cancel)
        #expect(machine.bytesReceived() == .none)
        #expect(machine.headReceived() == .none)
        #expect(machine.responseEnded() == .none)
        #expect(machine.deadlinePassed() == .none)
    }
}
