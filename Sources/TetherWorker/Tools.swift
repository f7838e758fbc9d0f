import TetherCore

/// A tool the agent can call.
public struct Tool: Sendable {
    /// The tool's name, as the model calls it.
    public var name: String
    /// Whether a human must approve each call before it runs.
    public var needsApproval: Bool
    /// Runs the tool on its input; throws to report a tool error.
    public var run: @Sendable (_ input: JSON, _ toolCallID: String) async throws -> JSON

    /// Makes a tool.
    public init(
        name: String, needsApproval: Bool,
        run: @escaping @Sendable (_ input: JSON, _ toolCallID: String) async throws -> JSON
    ) {
        self.name = name
        self.needsApproval = needsApproval
        self.run = run
    }
}

/// The demo agent's tools: harmless `get_weather` and `get_time`, and `send_email`, which needs approval (and only
/// pretends to send).
public enum DemoTools {
    /// Every demo tool by name.
    public static let all: [String: Tool] = [
        "get_weather": Tool(name: "get_weather", needsApproval: false) { input, _ in
            let city = input["city"]?.stringValue ?? "Paris"
            return ["city": .string(city), "forecast": "sunny", "temperatureC": 21]
        },
        "get_time": Tool(name: "get_time", needsApproval: false) { _, _ in
            ["utc": .string(Identifiers.isoTimestamp(milliseconds: Identifiers.nowMilliseconds()))]
        },
        "send_email": Tool(name: "send_email", needsApproval: true) { input, toolCallID in
            guard let to = input["to"]?.stringValue, to.contains("@") else {
                throw ToolFailure(message: "send_email needs a recipient address")
            }
            return ["status": "sent", "to": .string(to), "messageId": .string("msg_" + toolCallID.suffix(8))]
        },
    ]
}

/// A tool's failure, reported to the model as `tool-output-error`.
public struct ToolFailure: Error, Sendable {
    /// What went wrong.
    public var message: String
}
