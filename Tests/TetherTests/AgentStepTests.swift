import Testing
import TetherCore

@testable import TetherWorker

/// The agent's next step as a pure function of its log: no Redis, no sockets.
@Suite("Agent steps (pure)")
struct AgentStepTests {
    static let tools: [String: ToolDescriptor] = Dictionary(
        uniqueKeysWithValues: DemoTools.all.values.map { ($0.descriptor.name, $0.descriptor) })

    /// A state folded from `(type, payload)` events, as the runner folds the log.
    func state(_ events: [(EventType, JSON)]) -> AgentState {
        var state = AgentState()
        for (type, data) in events { state.apply(type.rawValue, data) }
        return state
    }

    func next(_ events: [(EventType, JSON)], maxSteps: Int = 8) -> AgentStep {
        AgentStep.next(state(events), maxSteps: maxSteps, tools: Self.tools)
    }

    static func started(_ turn: String) -> (EventType, JSON) { (.turnStarted, ["turnId": .string(turn), "step": 1]) }
    static func text(_ turn: String, _ text: String) -> (EventType, JSON) {
        (.text, ["turnId": .string(turn), "partId": "p1", "text": .string(text)])
    }
    static func finished(_ turn: String, calls: [JSON] = []) -> (EventType, JSON) {
        (
            .turnFinished,
            [
                "turnId": .string(turn), "finishReason": calls.isEmpty ? "stop" : "tool_calls",
                "toolCalls": .array(calls),
            ]
        )
    }
    static func call(_ id: String, _ name: String, _ input: JSON) -> JSON {
        ["toolCallId": .string(id), "toolName": .string(name), "input": input]
    }
    static let email: JSON = ["to": "a@b.co", "subject": "s", "body": "b"]

    @Test func aNewExecutionCallsTheModelAndAPlainReplyCompletes() {
        #expect(next([]) == .callModel)
        #expect(next([Self.started("t1"), Self.text("t1", "Hi"), Self.finished("t1")]) == .complete)
        #expect(next([Self.started("t1"), Self.finished("t1"), (.finish, ["status": "completed"])]) == .done)
    }

    @Test func aTurnCutShortIsAbortedThenRedone() {
        let cut = [Self.started("t1"), Self.text("t1", "Half a sent")]
        #expect(next(cut) == .abortTurn(turnID: "t1"))
        let aborted = cut + [(.turnAborted, ["turnId": "t1", "reason": "interrupted"])]
        #expect(next(aborted) == .callModel)
        // Aborted turns are void: the next request does not see their text.
        #expect(state(aborted).conversation(messages: []) == [])
    }

    @Test func aTurnThatKeepsFailingFailsTheExecution() {
        var events: [(EventType, JSON)] = []
        for n in 1...3 {
            events += [Self.started("t\(n)"), (.turnAborted, ["turnId": .string("t\(n)"), "reason": "overloaded"])]
        }
        guard case .fail(let code, let message) = next(events) else {
            Issue.record("expected a failure, got \(next(events))")
            return
        }
        #expect(code == "model_error")
        #expect(message.contains("overloaded"))
    }

    @Test func callsThatCannotRunAreRejectedBeforeAnythingElse() {
        let events = [
            Self.started("t1"),
            Self.finished(
                "t1",
                calls: [
                    Self.call("c1", "get_weather", ["city": "Oslo"]),
                    Self.call("c2", "launch_rocket", [:]),
                    ["toolCallId": "c3", "toolName": "get_weather", "inputError": "the arguments are not valid JSON"],
                    Self.call("c4", "get_weather", ["city": 42]),
                ]),
        ]
        guard case .reject(let rejections) = next(events) else {
            Issue.record("expected rejections, got \(next(events))")
            return
        }
        #expect(rejections.map(\.toolCallID) == ["c2", "c3", "c4"])
        #expect(rejections[0].errorText.contains("no tool named launch_rocket"))
        #expect(rejections[2].errorText.contains("input.city: must be string"))
    }

    @Test func severalCallsInOneTurn() {
        let turn = [
            Self.started("t1"),
            Self.finished(
                "t1",
                calls: [
                    Self.call("w", "get_weather", ["city": "Oslo"]), Self.call("e1", "send_email", Self.email),
                    Self.call("e2", "send_email", Self.email),
                ]),
        ]
        // Every call that needs approval is requested at once.
        #expect(next(turn) == .requestApprovals(["e1", "e2"]))
        let requested =
            turn + [(.approvalRequest, ["toolCallId": "e1"]), (.approvalRequest, ["toolCallId": "e2"])]
        // The call that needs none runs meanwhile.
        #expect(next(requested) == .runTools(["w"]))
        let ran = requested + [(.toolOutput, ["toolCallId": "w", "output": ["forecast": "rain"]])]
        #expect(next(ran) == .waitForDecisions(["e1", "e2"]))
        // Each is decided on its own.
        let one = ran + [(.approvalResponse, ["toolCallId": "e1", "approved": true, "reason": .null])]
        #expect(next(one) == .runTools(["e1"]))
        let both = one + [(.approvalResponse, ["toolCallId": "e2", "approved": false, "reason": "not now"])]
        #expect(next(both) == .recordDenials(["e2"]))
        let settled =
            both + [
                (.toolDenied, ["toolCallId": "e2", "reason": "not now"]),
                (.toolOutput, ["toolCallId": "e1", "output": ["status": "sent"]]),
            ]
        #expect(next(settled) == .callModel)
        // The next request carries every call and its result.
        let items = state(settled).conversation(messages: [["role": "user", "content": "go"]])
        #expect(items.count == 5)
        #expect(items[0] == .user("go"))
        guard case .assistant(_, let calls) = items[1] else {
            Issue.record("expected the assistant turn")
            return
        }
        #expect(calls.map(\.id) == ["w", "e1", "e2"])
        #expect(
            items[2] == .toolResult(toolCallId: "w", toolName: "get_weather", result: .output(["forecast": "rain"])))
        #expect(items[3] == .toolResult(toolCallId: "e1", toolName: "send_email", result: .output(["status": "sent"])))
        #expect(items[4] == .toolResult(toolCallId: "e2", toolName: "send_email", result: .denied("not now")))
    }

    @Test func aCallStartedWithoutALoggedResultRunsAgainAndOneWithAResultNever() {
        let turn = [
            Self.started("t1"),
            Self.finished(
                "t1", calls: [Self.call("a", "get_weather", ["city": "Oslo"]), Self.call("b", "get_time", [:])]),
            (.toolStarted, ["toolCallId": "a", "toolName": "get_weather", "attempt": 1]),
            (.toolStarted, ["toolCallId": "b", "toolName": "get_time", "attempt": 1]),
            (.toolOutput, ["toolCallId": "b", "output": ["utc": "now"]]),
        ]
        // The worker died with `a` running: `a` runs again (its second start), `b` never does.
        #expect(next(turn) == .runTools(["a"]))
        let calls = state(turn).turns[0].calls
        #expect(calls.map(\.starts) == [1, 1])
        let again = turn + [(.toolStarted, ["toolCallId": "a", "toolName": "get_weather", "attempt": 2])]
        #expect(state(again).turns[0].calls[0].starts == 2)
        #expect(next(again + [(.toolOutput, ["toolCallId": "a", "output": [:]])]) == .callModel)
    }

    @Test func theAgentStopsAtItsMaximumOfTurns() {
        var events: [(EventType, JSON)] = []
        for n in 1...2 {
            events += [
                Self.started("t\(n)"), Self.finished("t\(n)", calls: [Self.call("c\(n)", "get_time", [:])]),
                (.toolOutput, ["toolCallId": .string("c\(n)"), "output": ["utc": "now"]]),
            ]
        }
        #expect(next(events, maxSteps: 3) == .callModel)
        guard case .fail(let code, _) = next(events, maxSteps: 2) else {
            Issue.record("expected a failure")
            return
        }
        #expect(code == "max_steps_exceeded")
    }

    @Test func aVersionOneLogStillResumes() {
        // Text, then one whole call, as the first version of the log wrote them.
        let events: [(EventType, JSON)] = [
            (.text, ["text": "Let me check."]),
            (.toolCall, ["toolCallId": "c1", "toolName": "get_weather", "input": ["city": "Rome"]]),
        ]
        #expect(next(events) == .runTools(["c1"]))
    }

    @Test func schemaChecks() {
        let schema = DemoTools.sendEmail.descriptor.inputSchema
        #expect(JSONSchema.problem(Self.email, against: schema) == nil)
        #expect(JSONSchema.problem(["to": "a@b.co"], against: schema) == "input.subject: is required")
        #expect(
            JSONSchema.problem(["n": 1.5], against: ["properties": ["n": ["type": "integer"]]])
                == "input.n: must be integer, got number")
        #expect(
            JSONSchema.problem(["x": 1], against: ["type": "object", "additionalProperties": false])
                == "input.x: is not a known property")
        #expect(JSONSchema.problem(["e": "c"], against: ["properties": ["e": ["enum": ["a", "b"]]]]) != nil)
    }

    @Test func aCheckpointHoldsTheWholeState() throws {
        var events: [(EventType, JSON)] = [
            Self.started("t1"), Self.text("t1", "Let me check. "),
            (.toolCallStart, ["turnId": "t1", "toolCallId": "c1", "toolName": "send_email", "index": 0]),
            (.toolCallDelta, ["turnId": "t1", "toolCallId": "c1", "index": 0, "argumentsDelta": "{}"]),
            Self.finished(
                "t1",
                calls: [
                    Self.call("c1", "send_email", Self.email), Self.call("c2", "get_weather", ["city": "Oslo"]),
                    ["toolCallId": "c3", "toolName": "get_time", "inputError": "not JSON"],
                ]),
            (.approvalRequest, ["toolCallId": "c1", "expiresAt": "2026-12-02T10:00:00.000Z"]),
            (.approvalResponse, ["toolCallId": "c1", "approved": false, "reason": "no"]),
            (.toolDenied, ["toolCallId": "c1", "reason": "no"]),
            (.toolStarted, ["toolCallId": "c2", "attempt": 1]), (.toolStarted, ["toolCallId": "c2", "attempt": 2]),
            (.toolOutput, ["toolCallId": "c2", "output": ["forecast": "rain", "none": .null]]),
            (.toolError, ["toolCallId": "c3", "errorText": "bad"]),
            Self.started("t2"), (.turnAborted, ["turnId": "t2", "reason": "cut"]), Self.started("t3"),
            Self.text("t3", "Half"),
        ]
        let open = state(events)
        let encoded = try JSON.parse(open.checkpoint.rendered)
        #expect(AgentState(checkpoint: encoded) == open)
        events.append((.turnFinished, ["turnId": "t3", "finishReason": "stop", "toolCalls": []]))
        events.append((.finish, ["status": "completed"]))
        let done = state(events)
        #expect(AgentState(checkpoint: try JSON.parse(done.checkpoint.rendered)) == done)
        // Another version is not read (the log is folded instead).
        var future = encoded.objectValue ?? [:]
        future["version"] = 99
        #expect(AgentState(checkpoint: .object(future)) == nil)
    }
}
