import Foundation
import Logging
import MCP
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// The MCP stdio transport from the client's side: starts the server process and speaks JSON-RPC, one message per
/// line, over its standard input and output.
///
/// Not the SDK's `StdioTransport`: that one reads the process's own standard input by polling a non-blocking file
/// descriptor every 10 ms (100 wake-ups a second per idle server), and when the other end closes it ends its stream
/// without an error, on which the SDK's client loop spins. Nor Foundation's `readabilityHandler`, whose dispatch
/// source crashed the process now and then when the server exited. The pipes are a SwiftNIO `PipeChannel` on the
/// process's event loops: woken by data, and inactive when the server closes its output, which ends the stream
/// with ``MCPTransportClosed``; that ends the client's loop, and `onClose` tells the supervisor, which fails the
/// calls in flight and starts the server again at the next use.
actor MCPStdioTransport: Transport {
    nonisolated let logger: Logger
    let command: [String]
    private let onClose: @Sendable () -> Void
    private var process: Process?
    private var channel: (any Channel)?
    private let stream: AsyncThrowingStream<Data, any Error>
    private let continuation: AsyncThrowingStream<Data, any Error>.Continuation

    init(command: [String], logger: Logger, onClose: @escaping @Sendable () -> Void) {
        self.command = command
        self.logger = logger
        self.onClose = onClose
        (stream, continuation) = AsyncThrowingStream.makeStream(of: Data.self)
    }

    func connect() async throws {
        guard process == nil else { return }
        // A write to a server that just died must fail with EPIPE, not kill the worker.
        signal(SIGPIPE, SIG_IGN)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        let toServer = Pipe()
        let fromServer = Pipe()
        process.standardInput = toServer
        process.standardOutput = fromServer
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw MCPTransportClosed(reason: "could not start \(command.first ?? "")")
        }
        self.process = process
        // The channel owns copies of the parent's ends; Foundation's handles close theirs.
        let input = dup(fromServer.fileHandleForReading.fileDescriptor)
        let output = dup(toServer.fileHandleForWriting.fileDescriptor)
        try? fromServer.fileHandleForReading.close()
        try? toServer.fileHandleForWriting.close()
        let continuation = self.continuation
        let onClose = self.onClose
        do {
            channel = try await NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.allowRemoteHalfClosure, value: false)
                .takingOwnershipOfDescriptors(input: input, output: output) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            LineHandler(continuation: continuation, onClose: onClose))
                        return channel
                    }
                }
        } catch {
            close(input)
            close(output)
            process.terminate()
            throw MCPTransportClosed(reason: "could not open the pipes of \(command.first ?? "")")
        }
        // A server that exits while a child of its own keeps its output open (npx, uvx) ends the connection too.
        if let channel {
            process.terminationHandler = { _ in channel.close(promise: nil) }
            if !process.isRunning { channel.close(promise: nil) }
        }
        logger.info("MCP server started: \(command.joined(separator: " ")) (pid \(process.processIdentifier))")
    }

    func disconnect() async {
        continuation.finish()
        try? await channel?.close()
        channel = nil
        if let process, process.isRunning { process.terminate() }
    }

    func send(_ data: Data) async throws {
        guard let channel else { throw MCPTransportClosed() }
        var buffer = channel.allocator.buffer(capacity: data.count + 1)
        buffer.writeBytes(data)
        buffer.writeInteger(UInt8(ascii: "\n"))
        do {
            try await channel.writeAndFlush(buffer)
        } catch {
            throw MCPTransportClosed(reason: "the server's input is closed")
        }
    }

    nonisolated func receive() -> AsyncThrowingStream<Data, any Error> { stream }
}

/// Cuts the server's output into lines (JSON-RPC messages) and hands them over; when the output ends, ends the
/// stream with ``MCPTransportClosed`` and calls `onClose`, once.
private final class LineHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let continuation: AsyncThrowingStream<Data, any Error>.Continuation
    let onClose: @Sendable () -> Void
    private var pending: [UInt8] = []
    private var closed = false

    init(continuation: AsyncThrowingStream<Data, any Error>.Continuation, onClose: @escaping @Sendable () -> Void) {
        self.continuation = continuation
        self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        pending += buffer.readableBytesView
        var start = 0
        while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = pending[start..<newline]
            if !line.allSatisfy({ $0 == UInt8(ascii: "\r") }) { continuation.yield(Data(line)) }
            start = newline + 1
        }
        pending.removeFirst(start)
    }

    func channelInactive(context: ChannelHandlerContext) {
        end()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        end()
        context.close(promise: nil)
    }

    private func end() {
        guard !closed else { return }
        closed = true
        continuation.finish(throwing: MCPTransportClosed())
        onClose()
    }
}

/// The connection to an MCP server is gone (its process exited, its HTTP session ended).
struct MCPTransportClosed: Error, CustomStringConvertible {
    var reason = "the connection to the MCP server closed"
    var description: String { reason }
}
