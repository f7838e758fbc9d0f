import Testing
import TetherCore

@Suite("JSON parser")
struct JSONParserTests {
    @Test(arguments: [
        (#"{"a":[1,-2.5e3,true,false,null,"x"]}"#, JSON.object(["a": [1, -2500, true, false, nil, "x"]])),
        (#"  [ ]  "#, JSON.array([])),
        (#"{}"#, JSON.object([:])),
        (#""\u00e9\ud83c\udf24\n\t\"\\\/""#, JSON.string("é🌤\n\t\"\\/")),
        (#""café 🌤""#, JSON.string("café 🌤")),
        ("0", JSON.number(0)),
        ("-0.5", JSON.number(-0.5)),
        ("1E+2", JSON.number(100)),
    ])
    func valid(_ text: String, _ expected: JSON) throws {
        #expect(try JSON.parse(text) == expected)
    }

    @Test(arguments: [
        "", " ", "{", "[1,]", #"{"a":1,}"#, "{'a':1}", "01", "1.", ".5", "-", "1e", "NaN", "Infinity", "tru", "nul",
        #""abc"#, "\"a\u{01}b\"", #""\x""#, #""\ud83c""#, #""\udf24""#, #"{"a" 1}"#, "[1 2]", "1 2", "{}x", "1e999",
    ])
    func invalid(_ text: String) {
        #expect(throws: JSONError.self) { try JSON.parse(text) }
    }

    @Test func invalidUTF8AndDeepNestingAreRefused() {
        #expect(throws: JSONError.self) { try JSON.parse([UInt8(ascii: "\""), 0xC3, UInt8(ascii: "\"")]) }
        #expect(throws: JSONError.self) {
            try JSON.parse(String(repeating: "[", count: 600) + String(repeating: "]", count: 600))
        }
        #expect(throws: Never.self) {
            try JSON.parse(String(repeating: "[", count: 500) + String(repeating: "]", count: 500))
        }
    }

    @Test func errorsSayWhereAndWhat() {
        do {
            _ = try JSON.parse(#"{"a": tru}"#)
            Issue.record("expected an error")
        } catch {
            #expect(error.reason.contains("at byte"))
        }
    }

    @Test func renderThenParseIsTheSameValue() throws {
        let value: JSON = ["text": "a\"b\\c\n\u{01}é", "n": [1.5, -3, 1e20], "nested": ["k": [nil, true]]]
        #expect(try JSON.parse(value.rendered) == value)
    }
}
