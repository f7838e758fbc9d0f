/// One RESP2 reply from Redis, as a Swift value.
///
/// hiredis's reader cannot tell a null bulk string from a null array (RESP2 has both), so both are ``null``.
/// Error replies at the top level are thrown by the client as ``RedisError`` with code
/// ``RedisError/Code/serverError``; errors nested inside arrays (in `EXEC` replies, say) stay ``error(_:)``
/// values, and so do the elements of a pipelined batch.
public enum RESPValue: Sendable, Hashable {
    /// A simple string (status) reply, such as `OK` or `PONG`.
    case simpleString(String)
    /// An error reply, with Redis's message.
    case error(String)
    /// An integer reply.
    case integer(Int64)
    /// A bulk string reply: binary-safe bytes.
    case bulkString([UInt8])
    /// An array reply; elements may be arrays themselves.
    case array([RESPValue])
    /// A null bulk string or null array.
    case null
}

extension RESPValue {
    /// The text of a simple or bulk string (bulk bytes decoded as UTF-8, invalid bytes repaired), else `nil`.
    public var string: String? {
        switch self {
        case .simpleString(let s): return s
        case .bulkString(let bytes): return String(decoding: bytes, as: UTF8.self)
        default: return nil
        }
    }

    /// The bytes of a bulk or simple string, else `nil`.
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let bytes): return bytes
        case .simpleString(let s): return Array(s.utf8)
        default: return nil
        }
    }

    /// An integer reply, or a string that parses as one (Redis returns numbers as bulk strings in places), else `nil`.
    public var int: Int? {
        switch self {
        case .integer(let i): return Int(exactly: i)
        case .bulkString, .simpleString: return string.flatMap { Int($0) }
        default: return nil
        }
    }

    /// The elements of an array reply, else `nil`.
    public var array: [RESPValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// Whether this is ``null``.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The message of an ``error(_:)`` value, else `nil`.
    public var errorMessage: String? {
        if case .error(let message) = self { return message }
        return nil
    }

    /// Returns the value itself, or throws it as a ``RedisError`` when it is an ``error(_:)`` value.
    @discardableResult
    public func throwIfError() throws(RedisError) -> RESPValue {
        if case .error(let message) = self { throw RedisError(reply: message) }
        return self
    }

    /// A flat array of `field, value, field, value...` as a dictionary of strings (for `HGETALL`, `CONFIG GET`).
    public var stringDictionary: [String: String]? {
        guard let elements = array, elements.count % 2 == 0 else { return nil }
        var result: [String: String] = [:]
        result.reserveCapacity(elements.count / 2)
        var index = 0
        while index < elements.count {
            guard let key = elements[index].string, let value = elements[index + 1].string else { return nil }
            result[key] = value
            index += 2
        }
        return result
    }

    /// The text of a string reply, or throws ``RedisError/Code/unexpectedReply``.
    public func requireString() throws(RedisError) -> String {
        guard let s = try throwIfError().string else { throw unexpected("a string") }
        return s
    }

    /// The integer of an integer reply, or throws ``RedisError/Code/unexpectedReply``.
    public func requireInt() throws(RedisError) -> Int {
        guard let i = try throwIfError().int else { throw unexpected("an integer") }
        return i
    }

    /// The elements of an array reply, or throws ``RedisError/Code/unexpectedReply``.
    public func requireArray() throws(RedisError) -> [RESPValue] {
        guard let a = try throwIfError().array else { throw unexpected("an array") }
        return a
    }

    private func unexpected(_ wanted: String) -> RedisError {
        RedisError(.unexpectedReply, "expected \(wanted), got \(self)")
    }
}

extension RESPValue: CustomStringConvertible {
    /// A redis-cli-like rendering, for logs and test failures.
    public var description: String {
        switch self {
        case .simpleString(let s): return s
        case .error(let e): return "(error) \(e)"
        case .integer(let i): return "(integer) \(i)"
        case .bulkString(let b): return "\"\(String(decoding: b, as: UTF8.self))\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .null: return "(nil)"
        }
    }
}

extension RESPValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByArrayLiteral {
    /// A bulk string with the literal's UTF-8 bytes.
    public init(stringLiteral value: String) { self = .bulkString(Array(value.utf8)) }
    /// An integer reply.
    public init(integerLiteral value: Int64) { self = .integer(value) }
    /// An array reply.
    public init(arrayLiteral elements: RESPValue...) { self = .array(elements) }
}
