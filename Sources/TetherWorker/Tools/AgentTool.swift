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
    /// 1 for the first run of this call; more when a worker that started it died before its result was logged (it
    /// runs again, with the same ids: at-least-once).
    public var attempt: Int

    /// Makes a context.
    public init(
        executionID: String, toolCallID: String, forwardedHeaders: [String: String] = [:],
        deadline: ContinuousClock.Instant, logger: Logger, attempt: Int = 1
    ) {
        self.executionID = executionID
        self.toolCallID = toolCallID
        self.forwardedHeaders = forwardedHeaders
        self.deadline = deadline
        self.logger = logger
        self.attempt = attempt
    }

    /// The idempotency key of this call's side effects, the same on every attempt: `<executionId>:<toolCallId>`.
    public var idempotencyKey: String { executionID + ":" + toolCallID }

    /// The forwarded header `name` (matched without regard to case), if the request sent it.
    public func forwardedHeader(_ name: String) -> String? {
        if let value = forwardedHeaders[name] { return value }
        let lower = name.lowercased()
        return forwardedHeaders.first { $0.key.lowercased() == lower }?.value
    }
}

/// What a tool call came to: an output for the model, or a failure the model is told about (not an error of the
/// execution).
public enum ToolOutcome: Sendable, Equatable {
    /// The tool's output.
    case output(JSON)
    /// The tool failed; the message goes to the model as `tool-output-error`.
    case failure(String)

    /// The outcome label of `tether_tool_calls_total`.
    var metricsOutcome: String {
        switch self {
        case .output: "output"
        case .failure: "error"
        }
    }
}

/// A tool the agent can call: a built-in one, an HTTP endpoint (``HTTPTool``), or an MCP server's tool.
///
/// A tool may run more than once for one call (at-least-once: its worker died after `tool-started` and before the
/// result was logged); ``ToolContext/idempotencyKey`` is the same each time.
public protocol AgentTool: Sendable {
    /// Its name, description, input schema and approval policy.
    var descriptor: ToolDescriptor { get }
    /// How long one call may take; the context's deadline is this far from the start.
    var timeout: Duration { get }
    /// Runs one call on an input that already conforms to the descriptor's schema. Failures are values (the model is
    /// told); on cancellation (the worker is stopping) the outcome is ignored and the call runs again elsewhere.
    func run(_ input: JSON, context: ToolContext) async -> ToolOutcome
}

extension AgentTool {
    /// Two minutes.
    public var timeout: Duration { .seconds(120) }
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
