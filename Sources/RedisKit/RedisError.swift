/// The one error type of RedisKit.
///
/// Every failure a caller can see carries a ``Code`` (what kind of failure) and a human-readable message. For
/// ``Code/serverError`` the message is Redis's own error reply, verbatim (for example `WRONGTYPE Operation
/// against a key holding the wrong kind of value`).
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is. Extensible: compare with the static members.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case connectionClosed, unavailable, timeout, serverError, protocolError, authenticationFailed
            case invalidURL, unexpectedReply, poolClosed, crossSlot
        }
        private let base: Base

        /// The connection was closed (by the server, the network, or this process) before the reply arrived.
        public static let connectionClosed = Code(base: .connectionClosed)
        /// Redis could not be reached: the connect failed, or the client is backing off after recent failures.
        public static let unavailable = Code(base: .unavailable)
        /// The connect or the command did not finish within its timeout.
        public static let timeout = Code(base: .timeout)
        /// Redis answered with an error reply; the message is Redis's own.
        public static let serverError = Code(base: .serverError)
        /// The bytes from the server were not valid RESP2 (or nested deeper than hiredis accepts).
        public static let protocolError = Code(base: .protocolError)
        /// `AUTH` or `SELECT` failed while the connection was being set up.
        public static let authenticationFailed = Code(base: .authenticationFailed)
        /// The connection URL could not be parsed.
        public static let invalidURL = Code(base: .invalidURL)
        /// The reply had another shape than the caller asked for (a typed accessor failed).
        public static let unexpectedReply = Code(base: .unexpectedReply)
        /// The client was shut down.
        public static let poolClosed = Code(base: .poolClosed)
        /// The command's keys are in different cluster slots (or are not known), so no one node can run it: refused
        /// before it is sent.
        public static let crossSlot = Code(base: .crossSlot)

        /// The code's name, as used in logs.
        public var description: String { base.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// The human-readable message; Redis's own text for ``Code/serverError``.
    public var message: String
    /// For ``Code/connectionClosed``: `false` when the command provably never reached the server, so that it can
    /// be retried on another connection without risk of running twice.
    public var commandMayHaveRun: Bool

    /// Makes an error.
    public init(_ code: Code, _ message: String, commandMayHaveRun: Bool = true) {
        self.code = code
        self.message = message
        self.commandMayHaveRun = commandMayHaveRun
    }

    /// The error for an error reply: ``Code/serverError`` with Redis's text, except for the replies of a server that
    /// cannot serve anyone for a while (`LOADING` its data after a restart, `BUSY` running a script, `MASTERDOWN`
    /// a replica without its primary, `CLUSTERDOWN` a cluster failing over, `TRYAGAIN` keys of a slot being
    /// migrated), which are ``Code/unavailable``: the command did not run, and retrying shortly will do.
    public init(reply message: String) {
        let prefix = message.split(separator: " ", maxSplits: 1).first ?? ""
        if ["LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"].contains(prefix) {
            self.init(.unavailable, "Redis is not serving yet: \(message)", commandMayHaveRun: false)
        } else {
            self.init(.serverError, message)
        }
    }

    /// The first word of a server error (`WRONGTYPE`, `NOSCRIPT`, `ERR`...), or `nil` for other codes.
    public var serverErrorPrefix: Substring? {
        guard code == .serverError else { return nil }
        return message.split(separator: " ", maxSplits: 1).first
    }

    /// `code: message`.
    public var description: String { "RedisError(\(code)): \(message)" }
}
