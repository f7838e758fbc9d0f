import CHiredis
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

    /// Encodes the command in RESP (an array of bulk strings) with hiredis's formatter, into `buffer`.
    func encode(into buffer: inout ByteBuffer) {
        let argc = ends.count
        withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: argc) { argv in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: argc) { argvlen in
                storage.withUnsafeBytes { raw in
                    // A non-nil base even for empty storage: hiredis copies 0 bytes from it.
                    let base = raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
                    var start = 0
                    for (index, end) in ends.enumerated() {
                        argv[index] = (base + start).assumingMemoryBound(to: CChar.self)
                        argvlen[index] = end - start
                        start = end
                    }
                    // The sds variant formats lengths with sds's own integer code, not libc's printf: several
                    // times cheaper per command than redisFormatCommandArgv.
                    var target: sds?
                    let length = redisFormatSdsCommandArgv(&target, Int32(argc), argv.baseAddress, argvlen.baseAddress)
                    guard length >= 0, let target else {
                        // Only on allocation failure inside hiredis.
                        fatalError("hiredis could not format a command of \(argc) arguments")
                    }
                    buffer.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(length)))
                    redisFreeSdsCommand(target)
                }
            }
        }
    }
}
