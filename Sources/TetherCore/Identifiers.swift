import COpenSSL
import Foundation

/// Random bytes, ids and timestamps.
public enum Identifiers {
    private static let crockford = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)

    /// `count` cryptographically random bytes from OpenSSL.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let ok = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        precondition(ok == 1, "OpenSSL RAND_bytes failed")
        return bytes
    }

    /// A ULID: 48 bits of milliseconds then 80 random bits, 26 Crockford base-32 characters. Sorts by time.
    public static func ulid(now: Date = Date()) -> String {
        let ms = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: ms >> (8 * (5 - UInt64(i)))) }
        let random = randomBytes(10)
        for i in 0..<10 { bytes[6 + i] = random[i] }
        // 128 bits → 26 characters of 5 bits (the first carries 3 bits).
        var out = [UInt8](repeating: 0, count: 26)
        var value = (UInt128(bytes[0]) << 120)
        for i in 1..<16 { value |= UInt128(bytes[i]) << (8 * (15 - UInt128(i))) }
        for i in 0..<26 {
            let shift = UInt128(5 * (25 - i))
            out[i] = crockford[Int((value >> shift) & 0x1f)]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A new execution id: `exec_` and a ULID.
    public static func executionID() -> String { "exec_" + ulid() }

    /// Lower-case letters and digits, `count` of them, random.
    public static func token(_ count: Int) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            for byte in randomBytes(count) where byte < 252 && out.count < count {
                out.append(alphabet[Int(byte) % 36])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// ISO-8601 UTC with milliseconds: `2026-11-29T14:03:12.345Z`.
    public static func isoTimestamp(milliseconds ms: Int64) -> String {
        let seconds = ms / 1000
        let millis = Int(ms % 1000)
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }

    /// Milliseconds since the epoch of an ``isoTimestamp(milliseconds:)`` string, or `nil` when it is not one.
    public static func milliseconds(isoTimestamp text: String) -> Int64? {
        let digits = Array(text.utf8)
        guard digits.count == 24, digits[4] == UInt8(ascii: "-"), digits[10] == UInt8(ascii: "T"),
            digits[19] == UInt8(ascii: "."), digits[23] == UInt8(ascii: "Z")
        else { return nil }
        func number(_ range: Range<Int>) -> Int32? {
            var value: Int32 = 0
            for index in range {
                guard digits[index] >= UInt8(ascii: "0"), digits[index] <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int32(digits[index] - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
            let millis = number(20..<23)
        else { return nil }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        return Int64(timegm(&parts)) * 1000 + Int64(millis)
    }

    /// Milliseconds since the Unix epoch.
    public static func nowMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
