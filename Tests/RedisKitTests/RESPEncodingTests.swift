import CHiredis
import NIOCore
import Testing

@testable import RedisKit

/// RedisKit writes requests itself (see ``RedisCommand/encode(into:)``): byte for byte what hiredis formats.
@Suite("RESP requests")
struct RESPEncodingTests {
    /// What hiredis's `redisFormatSdsCommandArgv` makes of `arguments`.
    static func hiredis(_ arguments: [[UInt8]]) -> [UInt8] {
        let joined = arguments.flatMap { $0 }
        return joined.withUnsafeBufferPointer { raw in
            let base = UnsafeRawPointer(raw.baseAddress ?? UnsafePointer(bitPattern: 1)!)
            var argv: [UnsafePointer<CChar>?] = []
            var lengths: [Int] = []
            var start = 0
            for argument in arguments {
                argv.append((base + start).assumingMemoryBound(to: CChar.self))
                lengths.append(argument.count)
                start += argument.count
            }
            var target: sds?
            let length = redisFormatSdsCommandArgv(&target, Int32(arguments.count), &argv, &lengths)
            defer { redisFreeSdsCommand(target) }
            return Array(UnsafeRawBufferPointer(start: target, count: Int(length)))
        }
    }

    static let commands: [[[UInt8]]] = [
        [Array("PING".utf8)],
        [Array("SET".utf8), Array("k".utf8), []],
        [Array("SET".utf8), Array("binary".utf8), (0...255).map(UInt8.init)],
        [Array("XADD".utf8)] + (0..<12).map { Array("field-\($0)".utf8) },
        [Array("SET".utf8), Array("nine".utf8), Array(repeating: 0x39, count: 9)],
        [Array("SET".utf8), Array("ten".utf8), Array(repeating: 0x31, count: 10)],
        [Array("SET".utf8), Array("large".utf8), Array(repeating: 0x61, count: 123_456)],
        (0..<100).map { _ in Array("x".utf8) },
    ]

    /// By index: the arguments themselves (123,456 bytes of one) would be printed with every run.
    @Test(arguments: commands.indices)
    func aCommandIsWrittenAsHiredisFormatsIt(_ index: Int) {
        let arguments = Self.commands[index]
        var command = RedisCommand(String(decoding: arguments[0], as: UTF8.self), arguments: [])
        for argument in arguments.dropFirst() { command.append(argument) }
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        command.encode(into: &buffer)
        #expect(Array(buffer.readableBytesView) == Self.hiredis(arguments))
    }

    @Test func commandsWrittenOneAfterAnotherFollowEachOther() {
        var buffer = ByteBufferAllocator().buffer(capacity: 4)
        RedisCommand("GET", "a").encode(into: &buffer)
        RedisCommand("GET", "bb").encode(into: &buffer)
        #expect(String(buffer: buffer) == "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$2\r\nbb\r\n")
    }
}
