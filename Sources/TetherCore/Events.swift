/// The canonical, format-neutral event types of the log, version 2 (docs/protocol.md lists them with their fields).
///
/// A model turn is `turn-started`, then its text and tool-call fragments, then `turn-finished` (with the complete
/// tool calls), or `turn-aborted` when it was cut short and will be redone.
public enum EventType: String, Sendable, CaseIterable {
    /// The execution was created. `{type, executionId, agentId, conversationId}`.
    case started = "execution-started"
    /// A model turn begins. `{type, turnId, step}` (step counts turns from 1, redone ones included).
    case turnStarted = "turn-started"
    /// A piece of the model's reply. `{type, turnId, partId, text}` (`{type, text}` in version 1 logs).
    case text = "text-delta"
    /// The model starts a tool call. `{type, turnId, toolCallId, toolName, index}` (index within the turn).
    case toolCallStart = "tool-call-start"
    /// A fragment of a tool call's arguments (JSON text, to be concatenated). `{type, turnId, toolCallId, index,
    /// argumentsDelta}`.
    case toolCallDelta = "tool-call-delta"
    /// The turn ended. `{type, turnId, finishReason, usage: {inputTokens, outputTokens}, toolCalls: [{toolCallId,
    /// toolName, input | inputError}]}`.
    case turnFinished = "turn-finished"
    /// The turn was cut short (a crash, a lost lease, a provider error) and its partial output is void: clients
    /// drop its text. `{type, turnId, reason}`.
    case turnAborted = "turn-aborted"
    /// A whole tool call, in version 1 logs only. `{toolCallId, toolName, input}`.
    case toolCall = "tool-call"
    /// A tool call waits for a human decision. `{type, approvalId, toolCallId, toolName, input}`.
    case approvalRequest = "tool-approval-request"
    /// The human decision. `{type, toolCallId, approved, reason}`.
    case approvalResponse = "tool-approval-response"
    /// A worker is about to run a tool call (appended, fenced, before it runs; again on each rerun after a crash).
    /// `{type, toolCallId, toolName, attempt}`.
    case toolStarted = "tool-started"
    /// A tool's result. `{type, toolCallId, output}`.
    case toolOutput = "tool-output-available"
    /// A tool failed. `{type, toolCallId, errorText}`.
    case toolError = "tool-output-error"
    /// A tool call was denied. `{type, toolCallId, reason}`.
    case toolDenied = "tool-output-denied"
    /// The execution failed or was cancelled. `{type, code, message}`.
    case error = "error"
    /// The last event. `{type, status}`.
    case finish = "finish"
}

/// One event to append to an execution's log.
public struct NewEvent: Sendable, Hashable {
    /// The event type.
    public let type: EventType
    /// Its payload: a JSON object, with `type` among its members.
    public var data: JSON { json ?? (try? JSON.parse(renderedData)) ?? .object([:]) }
    /// The payload as a value, when it was made from one (a text delta keeps only its rendering: it is parsed back
    /// only when someone asks, which the runner does not).
    private let json: JSON?
    /// ``data`` as stored: compact JSON text, sorted keys.
    public let renderedData: String
    /// The status the execution moves to with this event, if any.
    public var status: ExecutionStatus?
    /// A field and value to set in the execution's approvals hash with this event, if any.
    public var approvalField: (field: String, value: String)?

    /// Makes an event; `type` is added to the payload.
    public init(
        _ type: EventType, _ fields: [String: JSON], status: ExecutionStatus? = nil,
        approvalField: (field: String, value: String)? = nil
    ) {
        var fields = fields
        fields["type"] = .string(type.rawValue)
        let data = JSON.object(fields)
        self.type = type
        self.json = data
        self.renderedData = data.rendered
        self.status = status
        self.approvalField = approvalField
    }

    /// A `text-delta` of a model turn, its payload rendered without sorting a dictionary: the one event a turn
    /// appends per token.
    public static func textDelta(turnID: String, partID: String, text: String) -> NewEvent {
        var rendered = "{\"partId\":"
        JSON.appendQuoted(partID, to: &rendered)
        rendered += ",\"text\":"
        JSON.appendQuoted(text, to: &rendered)
        rendered += ",\"turnId\":"
        JSON.appendQuoted(turnID, to: &rendered)
        rendered += ",\"type\":\"text-delta\"}"
        return NewEvent(type: .text, renderedData: rendered)
    }

    private init(type: EventType, renderedData: String) {
        self.type = type
        self.json = nil
        self.renderedData = renderedData
        self.status = nil
        self.approvalField = nil
    }

    /// Compares type, payload, status and approval field.
    public static func == (lhs: NewEvent, rhs: NewEvent) -> Bool {
        lhs.type == rhs.type && lhs.data == rhs.data && lhs.status == rhs.status
            && lhs.approvalField?.field == rhs.approvalField?.field
            && lhs.approvalField?.value == rhs.approvalField?.value
    }

    /// Hashes type and payload.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(type)
        hasher.combine(data)
    }
}

/// One event read back from the log.
public struct StoredEvent: Sendable, Hashable {
    /// The stream entry id (`1764425001234-0`), which is also the SSE id.
    public let id: String
    /// ``id`` parsed, once (the tailing path compares ids per event and per client); `nil` if malformed.
    public let position: StreamID?
    /// The event type (unknown types are kept as text).
    public var type: String
    /// The payload, JSON text as stored.
    public var data: String
    /// When it was appended, in milliseconds since the epoch.
    public var timestamp: Int64
    /// The status the execution moved to with this event, if it did.
    public var status: String?

    /// Makes a stored event.
    public init(id: String, type: String, data: String, timestamp: Int64, status: String? = nil) {
        self.id = id
        self.position = StreamID(id)
        self.type = type
        self.data = data
        self.timestamp = timestamp
        self.status = status
    }

    /// The payload parsed (an empty object when it is not valid JSON).
    public var json: JSON { (try? JSON.parse(data)) ?? .object([:]) }

    /// Whether this is the last event of an execution.
    public var isFinal: Bool { type == EventType.finish.rawValue }
}
