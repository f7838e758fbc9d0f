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
        // One pass over the UTF-8 bytes, no allocation: this runs for every event on the tailing path.
        var parts: (UInt64, UInt64) = (0, 0)
        var digits = 0
        var inSequence = false
        for byte in text.utf8 {
            if byte == UInt8(ascii: "-") {
                guard !inSequence, digits > 0 else { return nil }
                inSequence = true
                digits = 0
                continue
            }
            guard byte >= 48 && byte <= 57, digits < 20 else { return nil }
            let (times, overflowA) = (inSequence ? parts.1 : parts.0).multipliedReportingOverflow(by: 10)
            let (sum, overflowB) = times.addingReportingOverflow(UInt64(byte - 48))
            guard !overflowA, !overflowB else { return nil }
            if inSequence { parts.1 = sum } else { parts.0 = sum }
            digits += 1
        }
        guard inSequence, digits > 0 else { return nil }
        milliseconds = parts.0
        sequence = parts.1
    }

    /// `milliseconds-sequence`.
    public var description: String { "\(milliseconds)-\(sequence)" }

    /// Orders ids as Redis does.
    public static func < (lhs: StreamID, rhs: StreamID) -> Bool {
        (lhs.milliseconds, lhs.sequence) < (rhs.milliseconds, rhs.sequence)
    }
}
