import Logging
import TetherCore

/// What a tool runs with: which execution and call it serves (the call id doubles as an idempotency key: a tool
/// started but not logged as done is run again with the same id), the headers the request forwarded, the time it
/// must be done by, and a logger.
public struct ToolContext: Sendable {
    /// The execution.
    public var executionID: String
    /// The tool call (the provider's id): an idempotency key for side effects.
    public var toolCallID: String
    /// Headers the request forwarded for tools.
    public var forwardedHeaders: [String: String]
    /// When the call must be done.
    public var deadline: ContinuousClock.Instant
    /// A logger with the execution id.
    public var logger: Logger

    /// Makes a context.
    public init(
        executionID: String, toolCallID: String, forwardedHeaders: [String: String] = [:],
        deadline: ContinuousClock.Instant, logger: Logger
    ) {
        self.executionID = executionID
        self.toolCallID = toolCallID
        self.forwardedHeaders = forwardedHeaders
        self.deadline = deadline
        self.logger = logger
    }
}

/// What a tool call came to: an output for the model, or a failure the model is told about (not an error of the
/// execution).
public enum ToolOutcome: Sendable, Equatable {
    /// The tool's output.
    case output(JSON)
    /// The tool failed; the message goes to the model as `tool-output-error`.
    case failure(String)
}

/// A tool the agent can call. Built-in tools now; HTTP endpoints and MCP servers are tools too.
public protocol AgentTool: Sendable {
    /// Its name, description, input schema and approval policy.
    var descriptor: ToolDescriptor { get }
    /// Runs one call on an input that already conforms to the descriptor's schema.
    func run(_ input: JSON, context: ToolContext) async -> ToolOutcome
}

/// A tool whose body is a closure (the built-in tools).
public struct BuiltInTool: AgentTool {
    /// Its descriptor.
    public let descriptor: ToolDescriptor
    let body: @Sendable (JSON, ToolContext) async -> ToolOutcome

    /// Makes a tool.
    public init(_ descriptor: ToolDescriptor, body: @escaping @Sendable (JSON, ToolContext) async -> ToolOutcome) {
        self.descriptor = descriptor
        self.body = body
    }

    /// Runs the body.
    public func run(_ input: JSON, context: ToolContext) async -> ToolOutcome { await body(input, context) }
}

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
