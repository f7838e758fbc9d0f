import ArgumentParser
import Foundation
import RedisKit
import TetherCore

/// `tether top`: the deployment at a glance, refreshed in the terminal, from Redis alone.
struct TopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "Show live executions, waiting approvals, workers and their slots, and event rates (Redis only).")
    @OptionGroup var options: ConfigOptions
    @Option(help: "Seconds between refreshes.") var interval: Double = 2
    @Flag(
        help:
            "Print one screen, with rates over the interval (at least 2.5 s: workers write their status every 2 s), and exit."
    )
    var once = false

    func validate() throws {
        guard interval >= 0.1, interval <= 3600 else { throw ValidationError("--interval must be 0.1 to 3600") }
    }

    func run() async throws {
        let config = try options.load()
        let redis = try options.redis(config, name: "tether-top")
        defer { redis.shutdown() }
        let store = ExecutionStore(redis: redis, config: config)
        let title = "tether top · \(RedisConfiguration.redacted(config.redis.url)) · prefix \(config.redis.prefix)"
        var previous: DeploymentStatus?
        while true {
            let status = try await DeploymentStatus.read(store)
            let screen = status.rendered(previous: previous, title: title)
            if once {
                if previous != nil {
                    FileHandle.standardOutput.write(Data(screen.utf8))
                    return
                }
            } else {
                // Home and clear, then the screen, in one write.
                FileHandle.standardOutput.write(Data(("\u{1B}[H\u{1B}[2J" + screen).utf8))
            }
            previous = status
            try await Task.sleep(for: .milliseconds(Int64((once ? max(interval, 2.5) : interval) * 1000)))
        }
    }
}
