import ArgumentParser
import Foundation
import RedisKit
import TetherCore

/// `tether inspect <executionId>`: one execution as Redis holds it, for people (see ``ExecutionReport``). Reads
/// only; works against a running deployment.
struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Print an execution: its record, lease, a timeline of its events, its approvals (reads Redis only).")
    @OptionGroup var options: ConfigOptions
    @Argument(help: "The execution's id (exec_…).") var executionID: String
    @Option(help: "Longest text shown per timeline line.") var textLimit: Int = 240

    func validate() throws {
        guard executionID.hasPrefix("exec_"), Names.problem(String(executionID.dropFirst(5))) == nil else {
            throw ValidationError("\(executionID) is not an execution id (exec_…)")
        }
        guard textLimit > 0 else { throw ValidationError("--text-limit must be positive") }
    }

    func run() async throws {
        let config = try options.load()
        let redis = try options.redis(config, name: "tether-inspect")
        defer { redis.shutdown() }
        let store = ExecutionStore(redis: redis, config: config)
        let keys = store.keys
        guard let record = try await store.record(executionID) else {
            FileHandle.standardError.write(
                Data("tether: no execution \(executionID) under the prefix \(config.redis.prefix)\n".utf8))
            throw ExitCode(1)
        }
        let extra = try await redis.send("HMGET", keys.meta(executionID), "parked", "claimedAt").array ?? []
        let deadline = try await redis.send("ZSCORE", keys.deadlines(for: executionID), executionID).string
        let through = try await store.checkpoint(executionID)?.through
        let report = ExecutionReport(
            record: record, entries: try await store.allEntries(executionID),
            approvals: try await store.approvals(executionID), parkedAt: extra.first?.string,
            deadline: deadline.flatMap { Double($0) }.map { Int64($0) }, checkpointThrough: through,
            claimedAt: extra.dropFirst().first?.string)
        print(report.rendered(textLimit: textLimit), terminator: "")
    }
}
