import ArgumentParser
import Foundation
import NIOCore
import NIOPosix

/// The process entry point.
@main
enum TetherMain {
    static func main() async {
        // Swift concurrency's jobs run on NIO's event loops (sticky to the current loop), so a task awaiting a
        // Redis reply or writing an HTTP response resumes on the loop that completed it: no thread hop per await.
        // TETHER_NIO_EXECUTOR=0 keeps the default global executor (for comparison).
        if ProcessInfo.processInfo.environment["TETHER_NIO_EXECUTOR"] != "0" {
            NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        }
        await Tether.main()
    }
}

/// The `tether` command line.
struct Tether: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tether",
        abstract: "Durable AI agent executions streamed over server-sent events, with Redis as the source of truth.",
        subcommands: [Bench.self]
    )
}

/// `tether bench ...`: benchmarks against a real Redis server.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks against a real Redis server.",
        subcommands: [RedisBench.self]
    )
}
