import Foundation
import Logging
import MCP
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The MCP stdio transport from the client's side: starts the server process and speaks JSON-RPC, one message per
/// line, over its standard input and output.
///
/// Not the SDK's `StdioTransport`: that one reads the process's own standard input by polling a non-blocking file
/// descriptor every 10 ms (100 wake-ups a second per idle server), and when the other end closes it ends its stream
/// without an error, on which the SDK's client loop spins. This one is woken by the pipe (`readabilityHandler`), and
/// ends its stream with ``MCPTransportClosed`` when the process exits, which ends the client's loop; `onClose` tells
/// the supervisor, which fails the calls in flight and starts the server again at the next use.
actor MCPStdioTransport: Transport {
    nonisolated let logger: Logger
    let command: [String]
    private let onClose: @Sendable () -> Void
    private var process: Process?
    private var input: FileHandle?
    /// Kept (with the process) for as long as the transport lives: a pipe released while its readability handler
    /// may still run closes the descriptor under it.
    private var pipes: [Pipe] = []
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
        let lines = LineSplitter()
        let continuation = self.continuation
        let onClose = self.onClose
        let closed = Mutex(false)
        let close: @Sendable () -> Void = {
            guard
                closed.withLock({ done in
                    defer { done = true }
                    return !done
                })
            else { return }
            continuation.finish(throwing: MCPTransportClosed())
            onClose()
        }
        fromServer.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
                close()
                return
            }
            for line in lines.feed(data) { continuation.yield(line) }
        }
        process.terminationHandler = { _ in close() }
        do {
            try process.run()
        } catch {
            throw MCPTransportClosed(reason: "could not start \(command.first ?? "")")
        }
        self.process = process
        self.pipes = [toServer, fromServer]
        self.input = toServer.fileHandleForWriting
        logger.info("MCP server started: \(command.joined(separator: " ")) (pid \(process.processIdentifier))")
    }

    func disconnect() async {
        continuation.finish()
        pipes.last?.fileHandleForReading.readabilityHandler = nil
        try? input?.close()
        input = nil
        if let process, process.isRunning { process.terminate() }
    }

    func send(_ data: Data) async throws {
        guard let input else { throw MCPTransportClosed() }
        do {
            try input.write(contentsOf: data + [UInt8(ascii: "\n")])
        } catch {
            throw MCPTransportClosed(reason: "the server's input is closed")
        }
    }

    nonisolated func receive() -> AsyncThrowingStream<Data, any Error> { stream }
}

/// The connection to an MCP server is gone (its process exited, its HTTP session ended).
struct MCPTransportClosed: Error, CustomStringConvertible {
    var reason = "the connection to the MCP server closed"
    var description: String { reason }
}

/// Cuts a byte stream into lines (JSON-RPC messages), keeping an unfinished line for the next chunk.
final class LineSplitter: Sendable {
    private let pending = Mutex(Data())

    /// The complete, non-empty lines `chunk` finishes.
    func feed(_ chunk: Data) -> [Data] {
        pending.withLock { buffer in
            buffer.append(chunk)
            var lines: [Data] = []
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer[buffer.startIndex..<newline]
                if !line.allSatisfy({ $0 == UInt8(ascii: "\r") }) { lines.append(Data(line)) }
                buffer = Data(buffer[buffer.index(after: newline)...])
            }
            return lines
        }
    }
}
