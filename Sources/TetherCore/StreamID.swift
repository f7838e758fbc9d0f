/// A Redis stream entry id, `<milliseconds>-<sequence>`: the SSE id of every durable frame.
public struct StreamID: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Milliseconds part.
    public var milliseconds: UInt64
    /// Sequence part.
    public var sequence: UInt64

    /// The id before every entry (`0-0`).
    public static let zero = StreamID(milliseconds: 0, sequence: 0)

    /// Makes an id.
    public init(milliseconds: UInt64, sequence: UInt64) {
        self.milliseconds = milliseconds
        self.sequence = sequence
    }

    /// Parses `123-4` (both parts decimal, no sign, no spaces); `nil` when malformed.
    public init?(_ text: some StringProtocol) {
        let parts = String(text).split(separator: "-", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 2, let ms = Self.decimal(parts[0]), let seq = Self.decimal(parts[1]) else { return nil }
        milliseconds = ms
        sequence = seq
    }

    private static func decimal(_ text: Substring) -> UInt64? {
        guard !text.isEmpty, text.count <= 20, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return UInt64(text)
    }

    /// `milliseconds-sequence`.
    public var description: String { "\(milliseconds)-\(sequence)" }

    /// Orders ids as Redis does.
    public static func < (lhs: StreamID, rhs: StreamID) -> Bool {
        (lhs.milliseconds, lhs.sequence) < (rhs.milliseconds, rhs.sequence)
    }
}
