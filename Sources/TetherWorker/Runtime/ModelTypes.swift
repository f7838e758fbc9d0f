import NIOCore
import TetherCore

/// A tool as a model sees it: what it is called, what it does, the JSON Schema of its input, and whether a human
/// approves each call first.
public struct ToolDescriptor: Sendable, Equatable {
    /// The name the model calls it by.
    public var name: String
    /// What it does, for the model.
    public var description: String
    /// The JSON Schema of its input (an object schema).
    public var inputSchema: JSON
    /// Whether each call waits for a human decision.
    public var needsApproval: Bool

    /// Makes a descriptor.
    public init(name: String, description: String, inputSchema: JSON, needsApproval: Bool) {
        self.name = name
        self.description = description
        self.inputSchema = inputSchema
        self.needsApproval = needsApproval
    }
}

/// What became of a tool call, as the model sees it on its next turn.
public enum ToolResult: Sendable, Hashable {
    /// The tool ran and returned this output.
    case output(JSON)
    /// The tool failed, or its input was not valid.
    case error(String)
    /// A human (or the approval deadline) denied the call, with this reason.
    case denied(String?)
}

/// A tool call of a finished turn, with its provider's id and its arguments as the model wrote them.
public struct ToolCallRecord: Sendable, Equatable {
    /// The provider's id for the call.
    public var id: String
    /// The tool's name.
    public var name: String
    /// The arguments, JSON text as the model streamed it.
    public var arguments: String
    /// The arguments parsed, when they were valid JSON.
    public var input: JSON?

    /// Makes a record.
    public init(id: String, name: String, arguments: String, input: JSON?) {
        self.id = id
        self.name = name
        self.arguments = arguments
        self.input = input
    }
}

/// One item of the conversation a model is asked to continue, in no provider's format.
public enum ConversationItem: Sendable, Equatable {
    /// A system message of the request (the agent's own system prompt travels in ``ModelRequest/system``).
    case system(String)
    /// A user message: a string, or an array of `{type:"text"}` / `{type:"image_url"}` parts.
    case user(JSON)
    /// An assistant message: its text and the tool calls it made.
    case assistant(text: String, toolCalls: [ToolCallRecord])
    /// The result of one tool call.
    case toolResult(toolCallId: String, toolName: String, result: ToolResult)
}

/// One model turn to stream.
public struct ModelRequest: Sendable {
    /// The execution it belongs to (for logs).
    public var executionID: String
    /// The model and its parameters.
    public var model: AgentDefinition.Model
    /// The agent's system prompt.
    public var system: String?
    /// The conversation so far.
    public var items: [ConversationItem]
    /// The tools the model may call.
    public var tools: [ToolDescriptor]

    /// Makes a request.
    public init(
        executionID: String, model: AgentDefinition.Model, system: String?, items: [ConversationItem],
        tools: [ToolDescriptor]
    ) {
        self.executionID = executionID
        self.model = model
        self.system = system
        self.items = items
        self.tools = tools
    }
}

/// What a provider streams for one turn, in no provider's format.
public enum ModelEvent: Sendable, Equatable {
    /// A piece of reply text.
    case textDelta(String)
    /// A tool call begins: the provider's id and the tool's name.
    case toolCallStart(id: String, name: String)
    /// A fragment of a tool call's arguments (JSON text).
    case toolCallDelta(id: String, arguments: String)
    /// A tool call's arguments are complete.
    case toolCallEnd(id: String)
    /// Token usage of the turn, as far as the provider tells it.
    case usage(input: Int?, output: Int?)
    /// Why the model stopped: `stop`, `tool_calls`, `length`, … (normalised to OpenAI's words).
    case finish(reason: String)
}

/// A model request that failed. ``message`` is for people and safe to show (never the API key); ``detail`` goes to
/// the log only.
public struct ModelError: Error, Sendable, CustomStringConvertible {
    /// A stable code: `model_error`, `model_timeout`, `model_rate_limited`, `model_unavailable`…
    public var code: String
    /// A message for people.
    public var message: String
    /// Whether the same request may succeed later (429, 5xx, a dropped connection).
    public var retryable: Bool
    /// How long the provider asked to wait (`Retry-After`).
    public var retryAfter: Duration?

    /// Makes an error.
    public init(code: String, message: String, retryable: Bool = false, retryAfter: Duration? = nil) {
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retryAfter = retryAfter
    }

    /// The code and message.
    public var description: String { "\(code): \(message)" }
}

/// Where a provider's events go. Each call returns a future that completes once the event is stored in the log
/// (or fails, when the lease was lost or Redis is away); a provider may wait on it before reading on
/// (backpressure) or just keep emitting (events are stored in order either way).
public protocol TurnSink: Sendable {
    /// Takes the next event of the turn.
    func emit(_ event: ModelEvent) -> EventLoopFuture<Void>
}

/// A model API: streams one turn of a conversation.
///
/// Implementations: the demo model (``DemoProvider``), OpenAI-compatible Chat Completions, Anthropic Messages.
/// A provider honours task cancellation (an in-flight request is aborted) and reports failures as ``ModelError``.
public protocol ModelProvider: Sendable {
    /// Streams one turn into `sink`; returns when the turn has ended and every event was handed over.
    func streamTurn(_ request: ModelRequest, into sink: any TurnSink) async throws
}
