import NIOCore

/// A value that can be one argument of a Redis command. Arguments are bytes; strings are sent as UTF-8 and numbers
/// in their decimal form, as Redis expects.
public protocol RedisArgument: Sendable {
    /// Appends this argument's bytes.
    func appendRedisArgument(to bytes: inout [UInt8])
}

extension String: RedisArgument {
    /// The UTF-8 bytes.
    public func appendRedisArgument(to bytes: inout [UInt8]) { bytes.append(contentsOf: utf8) }
}

extension Substring: RedisArgument {
    /// The UTF-8 bytes.
    public func appendRedisArgument(to bytes: inout [UInt8]) { bytes.append(contentsOf: utf8) }
}

extension Array: RedisArgument where Element == UInt8 {
    /// The bytes as they are (binary-safe).
    public func appendRedisArgument(to bytes: inout [UInt8]) { bytes.append(contentsOf: self) }
}

extension ByteBuffer: RedisArgument {
    /// The readable bytes as they are (binary-safe).
    public func appendRedisArgument(to bytes: inout [UInt8]) {
        withUnsafeReadableBytes { bytes.append(contentsOf: $0) }
    }
}

extension Int: RedisArgument {
    /// The decimal form.
    public func appendRedisArgument(to bytes: inout [UInt8]) { bytes.append(contentsOf: String(self).utf8) }
}

extension Int64: RedisArgument {
    /// The decimal form.
    public func appendRedisArgument(to bytes: inout [UInt8]) { bytes.append(contentsOf: String(self).utf8) }
}

extension Double: RedisArgument {
    /// The shortest decimal form that reads back as the same value.
    public func appendRedisArgument(to bytes: inout [UInt8]) { bytes.append(contentsOf: "\(self)".utf8) }
}

/// One Redis command: a name and its arguments, all binary-safe.
///
/// ```swift
/// let id = try await client.send(RedisCommand("XADD", key, "*", "type", "text", "data", payload)).requireString()
/// ```
public struct RedisCommand: Sendable, Hashable, CustomStringConvertible {
    /// All arguments, the command name first, back to back.
    private(set) var storage: [UInt8]
    /// Where each argument ends in `storage`.
    private(set) var ends: [Int]

    /// Makes a command from its name and arguments.
    public init(_ name: String, _ arguments: any RedisArgument...) {
        self.init(name, arguments: arguments)
    }

    /// Makes a command from its name and an array of arguments.
    public init(_ name: String, arguments: [any RedisArgument]) {
        storage = []
        storage.reserveCapacity(32)
        ends = []
        ends.reserveCapacity(arguments.count + 1)
        append(name)
        for argument in arguments { append(argument) }
    }

    /// Appends one more argument.
    public mutating func append(_ argument: some RedisArgument) {
        argument.appendRedisArgument(to: &storage)
        ends.append(storage.count)
    }

    /// Appends one more argument (existential form, for heterogenous lists).
    public mutating func append(argument: any RedisArgument) {
        argument.appendRedisArgument(to: &storage)
        ends.append(storage.count)
    }

    /// The number of arguments, the name included.
    public var count: Int { ends.count }

    /// The arguments, the name first, as byte arrays.
    public var arguments: [[UInt8]] {
        var start = 0
        return ends.map { end in
            defer { start = end }
            return Array(storage[start..<end])
        }
    }

    /// The command's name in upper case (`XADD`), for logs and routing.
    public var name: String {
        String(decoding: storage[0..<(ends.first ?? 0)], as: UTF8.self).uppercased()
    }

    /// The command, rendered for logs (arguments longer than 64 bytes are cut).
    public var description: String {
        arguments.map { arg in
            let text = String(decoding: arg.prefix(64), as: UTF8.self)
            return arg.count > 64 ? text + "…" : text
        }.joined(separator: " ")
    }

    /// Encodes the command in RESP (an array of bulk strings) into `buffer`, sized once and written in place.
    ///
    /// hiredis reads the replies; the request side is written here because hiredis's formatters allocate per
    /// command: `redisFormatSdsCommandArgv` grows an sds string to twice the command's size, which for a
    /// kilobyte-sized append made glibc consolidate its free lists on almost every call (5% of a worker's CPU at
    /// 10,000 appends per second), and `redisFormatCommandArgv` formats every length with `printf`. The bytes are
    /// the same as both produce (checked against hiredis in the tests).
    func encode(into buffer: inout ByteBuffer) {
        var size = 3 + Self.decimalDigits(ends.count)
        var start = 0
        for end in ends {
            size += 5 + Self.decimalDigits(end - start) + end - start
            start = end
        }
        buffer.reserveCapacity(minimumWritableBytes: size)
        buffer.writeInteger(UInt8(ascii: "*"))
        Self.writeDecimal(ends.count, into: &buffer)
        buffer.writeInteger(Self.crlf)
        storage.withUnsafeBytes { raw in
            var start = 0
            for end in ends {
                buffer.writeInteger(UInt8(ascii: "$"))
                Self.writeDecimal(end - start, into: &buffer)
                buffer.writeInteger(Self.crlf)
                buffer.writeBytes(UnsafeRawBufferPointer(rebasing: raw[start..<end]))
                buffer.writeInteger(Self.crlf)
                start = end
            }
        }
    }

    /// `\r\n` as one big-endian integer write.
    private static let crlf = UInt16(UInt8(ascii: "\r")) << 8 | UInt16(UInt8(ascii: "\n"))

    private static func decimalDigits(_ value: Int) -> Int {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        return digits
    }

    /// Writes a non-negative `value` in decimal.
    private static func writeDecimal(_ value: Int, into buffer: inout ByteBuffer) {
        let digits = decimalDigits(value)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: digits) { target in
            var rest = value
            for index in stride(from: digits - 1, through: 0, by: -1) {
                target[index] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            }
            return digits
        }
    }
}
