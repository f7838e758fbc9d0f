/// Where an execution stands.
public enum ExecutionStatus: String, Sendable, Codable, CaseIterable {
    /// Created, or a worker is running it.
    case running
    /// Waiting for a human decision on a tool call.
    case suspended
    /// Finished with a reply.
    case completed
    /// Finished with an error.
    case failed
    /// Stopped before it finished.
    case cancelled

    /// Whether the execution has finished (no more events will be appended).
    public var isTerminal: Bool {
        switch self {
        case .completed, .failed, .cancelled: true
        case .running, .suspended: false
        }
    }
}
