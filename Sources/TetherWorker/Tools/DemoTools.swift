import TetherCore

/// The built-in tools any agent can name: harmless `get_weather` and `get_time`, and `send_email`, which needs
/// approval (and only pretends to send).
public enum DemoTools {
    /// Every built-in tool by name.
    public static let all: [String: any AgentTool] = Dictionary(
        uniqueKeysWithValues: [getWeather, getTime, sendEmail].map { ($0.descriptor.name, $0 as any AgentTool) })

    static let getWeather = BuiltInTool(
        ToolDescriptor(
            name: "get_weather", description: "The current weather in a city.",
            inputSchema: [
                "type": "object", "properties": ["city": ["type": "string", "description": "The city's name."]],
                "required": ["city"],
            ], needsApproval: false)
    ) { input, _ in
        let city = input["city"]?.stringValue ?? "Paris"
        return .output(["city": .string(city), "forecast": "sunny", "temperatureC": 21])
    }

    static let getTime = BuiltInTool(
        ToolDescriptor(
            name: "get_time", description: "The current time (UTC).",
            inputSchema: ["type": "object", "properties": ["timezone": ["type": "string"]]], needsApproval: false)
    ) { _, _ in
        .output(["utc": .string(Identifiers.isoTimestamp(milliseconds: Identifiers.nowMilliseconds()))])
    }

    static let sendEmail = BuiltInTool(
        ToolDescriptor(
            name: "send_email", description: "Sends an email (a human approves each one first).",
            inputSchema: [
                "type": "object",
                "properties": ["to": ["type": "string"], "subject": ["type": "string"], "body": ["type": "string"]],
                "required": ["to", "subject", "body"],
            ], needsApproval: true)
    ) { input, context in
        guard let to = input["to"]?.stringValue, to.contains("@") else {
            return .failure("send_email needs a recipient address")
        }
        return .output(
            ["status": "sent", "to": .string(to), "messageId": .string("msg_" + context.toolCallID.suffix(8))])
    }
}
