import Foundation
import Logging
import Synchronization

/// A log handler that writes one JSON object per line (`LOG_FORMAT=json`): `ts` (ISO-8601, milliseconds, UTC),
/// `level`, `label`, `message`, then every metadata entry as a member of its own (`executionId`, `tenant`, `agent`
/// wherever one applies). Metadata values that are lists or dictionaries become JSON arrays and objects.
public struct JSONLogHandler: LogHandler {
    /// Handler-level metadata (`logger[metadataKey:] = …`).
    public var metadata: Logger.Metadata = [:]
    /// The lowest level written.
    public var logLevel: Logger.Level = .info
    private let label: String
    private let write: @Sendable (String) -> Void

    /// A handler for `label` that passes each line (with its newline) to `write`.
    public init(label: String, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.write = write
    }

    /// A handler for `label` writing to standard error, a whole line at a time.
    public static func standardError(label: String) -> JSONLogHandler {
        JSONLogHandler(label: label) { line in
            standardErrorLock.withLock { _ in FileHandle.standardError.write(Data(line.utf8)) }
        }
    }

    private static let standardErrorLock = Mutex(())

    /// One entry of the handler-level metadata.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Writes the event as one line (an attached error goes in as `error`).
    public func log(event: LogEvent) {
        var explicit = event.metadata ?? [:]
        if let error = event.error { explicit["error"] = .string(String(describing: error)) }
        write(
            Self.line(
                level: event.level, label: label, message: event.message.description, metadata: metadata, explicit))
    }

    /// The JSON line of one log call: the handler's metadata, then the call's own (which wins).
    static func line(
        level: Logger.Level, label: String, message: String, metadata: Logger.Metadata, _ explicit: Logger.Metadata?,
        now: Int64 = Identifiers.nowMilliseconds()
    ) -> String {
        var object: [String: JSON] = [:]
        for (key, value) in metadata { object[key] = json(value) }
        for (key, value) in explicit ?? [:] { object[key] = json(value) }
        object["ts"] = .string(Identifiers.isoTimestamp(milliseconds: now))
        object["level"] = .string(level.rawValue)
        object["label"] = .string(label)
        object["message"] = .string(message)
        return JSON.object(object).rendered + "\n"
    }

    private static func json(_ value: Logger.Metadata.Value) -> JSON {
        switch value {
        case .string(let text): .string(text)
        case .stringConvertible(let value): .string(value.description)
        case .array(let values): .array(values.map(json))
        case .dictionary(let values): .object(values.mapValues(json))
        }
    }
}
