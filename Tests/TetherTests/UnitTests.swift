import Foundation
import NIOCore
import Testing
import TetherCore
import TetherGateway

@testable import TetherWorker

@Suite("Units", .timeLimit(.minutes(2)))
struct UnitTests {
    @Test func jsonRoundTripAndEscaping() throws {
        let value: JSON = ["b": [1, 2.5, "x\n\"y\"\u{01}"], "a": true, "c": nil, "d": ["nested": "é"]]
        let text = value.rendered
        #expect(text == #"{"a":true,"b":[1,2.5,"x\n\"y\"\u0001"],"c":null,"d":{"nested":"é"}}"#)
        #expect(try JSON.parse(text) == value)
        #expect(JSON.quoted("\u{2028}") == "\"\\u2028\"")
        #expect(throws: JSONError.self) { try JSON.parse("{\"a\":") }
    }

    @Test func rawMembers() throws {
        let text = #"{"a":1,"text":"hi \"x\" }","nested":{"text":"no"},"list":[1,{"b":"]"}],"last":true}"#
        #expect(JSON.rawMember("text", in: text) == #""hi \"x\" }""#)
        #expect(JSON.rawMember("a", in: text) == "1")
        #expect(JSON.rawMember("nested", in: text) == #"{"text":"no"}"#)
        #expect(JSON.rawMember("list", in: text) == #"[1,{"b":"]"}]"#)
        #expect(JSON.rawMember("last", in: text) == "true")
        #expect(JSON.rawMember("missing", in: text) == nil)
        #expect(JSON.rawMember("a", in: "[1]") == nil)
        #expect(JSON.rawMember("a", in: #"{ "a" : "x" , "b":2 }"#) == #""x""#)
        // Agrees with a full parse for what the renderer reads.
        let event = JSON.object(["text": .string("tab\t \u{1} é \u{2028}"), "type": "text-delta"]).rendered
        #expect(try JSON.parse(String(JSON.rawMember("text", in: event)!)) == .string("tab\t \u{1} é \u{2028}"))
    }

    @Test func streamIDs() {
        #expect(StreamID("1764425001234-0") == StreamID(milliseconds: 1_764_425_001_234, sequence: 0))
        #expect(StreamID("1-2")! < StreamID("1-10")!)
        #expect(StreamID("2-0")! > StreamID("1-99")!)
        for bad in ["", "1", "1-", "-1", "a-1", "1-1-1", "+1-1", "1- 1", "99999999999999999999999-1"] {
            #expect(StreamID(bad) == nil, "\(bad)")
        }
        #expect(StreamID.zero.description == "0-0")
    }

    @Test func identifiers() {
        let id = Identifiers.executionID()
        #expect(id.hasPrefix("exec_") && id.count == 31)
        #expect(Identifiers.ulid(now: Date(timeIntervalSince1970: 0)).hasPrefix("0000000000"))
        #expect(Identifiers.ulid() != Identifiers.ulid())
        #expect(Identifiers.isoTimestamp(milliseconds: 1_795_967_227_069) == "2026-11-29T15:47:07.069Z")
        #expect(Identifiers.token(20).count == 20)
    }

    @Test func apiKeyParsingAndDigest() {
        #expect(APIKeys.parse("tk_abc123_SECRETxyz")! == ("abc123", "SECRETxyz"))
        for bad in ["", "tk_", "tk_a", "tk__b", "tk_a_", "xx_a_b", "tk_a_b_c", "tk_a-b_c"] {
            #expect(APIKeys.parse(bad) == nil, "\(bad)")
        }
        #expect(APIKeys.digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(APIKeys.constantTimeEqual("abc", "abc"))
        #expect(!APIKeys.constantTimeEqual("abc", "abd"))
        #expect(!APIKeys.constantTimeEqual("abc", "abcd"))
    }

    @Test func rendererIsAFunctionOfTheStoredEvent() {
        let renderer = ChatChunkRenderer(executionID: "exec_X", model: "demo")
        let event = StoredEvent(
            id: "5-1", type: "text-delta", data: #"{"text":"hi \"there\"","type":"text-delta"}"#,
            timestamp: 1_700_000_000_999)
        var a = ByteBuffer()
        var b = ByteBuffer()
        renderer.appendFrame(event, to: &a)
        renderer.appendFrame(event, to: &b)
        #expect(a == b)
        #expect(
            String(buffer: a)
                == "id: 5-1\ndata: {\"id\":\"exec_X\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"demo\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi \\\"there\\\"\"},\"finish_reason\":null}]}\n\n"
        )
        let finish = StoredEvent(id: "6-0", type: "finish", data: #"{"status":"failed","type":"finish"}"#, timestamp: 0)
        #expect(renderer.chunk(finish).contains("\"finish_reason\":\"error\""))
    }

    @Test func demoModel() {
        let model = DemoModel()
        func context(_ text: String) -> ModelContext {
            ModelContext(messages: [["role": "user", "content": .string(text)]], toolCalls: [])
        }
        #expect(model.respond(context("count to 5")).text == "1 2 3 4 5")
        #expect(model.respond(context("weather in rome?")).toolCall?.input == ["city": "Rome"])
        #expect(model.respond(context("mail x@y.io an e-mail")).toolCall?.name == "send_email")
        #expect(model.respond(context("hi")).toolCall == nil)
        let denied = ModelContext(
            messages: [["role": "user", "content": "email a@b.co"]],
            toolCalls: [("send_email", ["to": "a@b.co"], .denied("Not now: budget freeze."))])
        #expect(model.respond(denied).text == "I did not send the email. You declined: Not now: budget freeze.")
        #expect(DemoModel.tokens("a b  c") == ["a ", "b ", " ", "c"])
        // A conversation's earlier exchange (a call and its result) is not this request's: a new message gets a
        // new answer, not the old call's report.
        let call = ToolCallRecord(id: "c1", name: "get_time", arguments: "{}", input: [:])
        let request = ModelRequest(
            executionID: "exec_1", model: AgentDefinition.Model(provider: .demo, name: "demo"), system: nil,
            items: [
                .user("what time is it"), .assistant(text: "", toolCalls: [call]),
                .toolResult(toolCallId: "c1", toolName: "get_time", result: .output(["utc": "noon"])),
                .assistant(text: "It is noon.", toolCalls: []), .user("hello"),
            ], tools: [])
        #expect(DemoProvider.context(request).toolCalls.isEmpty)
        #expect(model.respond(DemoProvider.context(request)).text.hasPrefix("Hello!"))
    }

    @Test func aTextDeltaRendersAsItsPayloadWould() {
        for text in ["plain ", "quote \" and \\ and \n", "é 🌤", ""] {
            let event = NewEvent.textDelta(turnID: "turn_abc", partID: "p2", text: text)
            #expect(event.renderedData == event.data.rendered)
            #expect(event.data["type"] == "text-delta")
        }
    }
}
