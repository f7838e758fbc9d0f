import HTTPTypes

/// The header names the gateway reads and writes beyond HTTP's own.
extension HTTPField.Name {
    /// The execution id, on create and reconnect responses (what `WorkflowChatTransport` reconnects with).
    static let workflowRunID = Self("x-workflow-run-id")!
    /// The index of the last chunk of a UI message stream, on its reconnects.
    static let workflowStreamTailIndex = Self("x-workflow-stream-tail-index")!
    /// `v1` on a UI message stream.
    static let uiMessageStream = Self("x-vercel-ai-ui-message-stream")!
    /// The stream format a client asks for (`inkeep`, `ui-message`).
    static let streamFormat = Self("x-tether-stream-format")!
    /// SSE's resume cursor.
    static let lastEventID = Self("Last-Event-ID")!
    /// Inkeep's resume cursor: frames the client already has.
    static let streamStartIndex = Self("x-stream-start-index")!
    /// A create request's idempotency key.
    static let idempotencyKey = Self("Idempotency-Key")!
    /// `true` on a create response that streams the execution an earlier request made.
    static let idempotentReplayed = Self("Idempotent-Replayed")!
    /// `no`: nginx must not buffer the stream.
    static let accelBuffering = Self("X-Accel-Buffering")!
}
