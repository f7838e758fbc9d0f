import Foundation
import Synchronization
import TestSupport
import Testing
import TetherClient
import TetherCore

#if canImport(Glibc)
    import Glibc
#endif

/// nginx (`scripts/test` installs it) running the shipped `config/nginx.conf` in a folder of its own, with only
/// the listen port and the upstream server lines rewritten.
final class Nginx {
    let port: Int
    private let process = Process()
    private let folder: URL

    static let executable = ["/usr/sbin/nginx", "/usr/bin/nginx"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    init(upstreams: [Int]) throws {
        port = try freePort()
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("nginx-\(Identifiers.token(6))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../../config/nginx.conf")
        var lines: [String] = []
        var wroteUpstreams = false
        for line in try String(contentsOf: shipped, encoding: .utf8).split(
            separator: "\n", omittingEmptySubsequences: false)
        {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("listen ") {
                lines.append("        listen 127.0.0.1:\(port);")
            } else if trimmed.hasPrefix("server 127.0.0.1:") {
                // The shipped file's server lines, each with its options, one per gateway of the test.
                guard !wroteUpstreams else { continue }
                wroteUpstreams = true
                let options = trimmed.split(separator: " ").dropFirst(2).joined(separator: " ")
                for upstream in upstreams { lines.append("        server 127.0.0.1:\(upstream) \(options)") }
            } else {
                lines.append(String(line))
            }
        }
        #expect(wroteUpstreams, "config/nginx.conf has no upstream server lines")
        let config = folder.appendingPathComponent("nginx.conf")
        try lines.joined(separator: "\n").write(to: config, atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: try #require(Self.executable, "install nginx (scripts/test does)"))
        process.arguments = ["-p", folder.path, "-c", config.path, "-e", "stderr", "-g", "daemon off;"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    func stop() {
        if process.isRunning {
            // SIGQUIT: nginx's graceful stop of the master and its workers.
            kill(process.processIdentifier, SIGQUIT)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: folder)
    }
}

@Suite("Behind nginx", .serialized, .timeLimit(.minutes(2)))
struct LoadBalancerTests {
    /// A gateway process on a port of its own, restartable on the same port.
    final class GatewayProcess {
        let port: Int
        let harness: Harness
        private(set) var process: Process

        init(_ harness: Harness) async throws {
            self.harness = harness
            (process, port) = try await startListening { port in
                try launch("gateway", harness, environment: ["TETHER_PORT": "\(port)"])
            }
        }

        func killHard() {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        func restart() throws {
            process = try launch("gateway", harness, environment: ["TETHER_PORT": "\(port)"])
        }

        func ready() async throws -> Bool {
            let client = HTTPClient(port: port)
            return try await eventually(20) { (try? await client.send(.GET, "/healthz").status) == 200 }
        }

        deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    }

    @Test func aClientKeepsEveryEventWhenItsGatewayIsKilled() async throws {
        // The worker runs in this process; the gateways are real processes behind nginx.
        let harness = try await Harness.start(tokenDelayMilliseconds: 15)
        defer { harness.stop() }
        let gateways = [try await GatewayProcess(harness), try await GatewayProcess(harness)]
        for gateway in gateways { #expect(try await gateway.ready()) }
        let nginx = try Nginx(upstreams: gateways.map(\.port))
        defer { nginx.stop() }
        let client = HTTPClient(port: nginx.port)
        #expect(try await eventually(20) { (try? await client.send(.GET, "/healthz").status) == 200 })

        // The stream goes through nginx unbuffered, with the gateway's X-Accel-Buffering passed on.
        let body = Array(#"{"messages":[{"role":"user","content":"count to 400"}]}"#.utf8)
        let first = try await client.open(
            .POST, "/run/api/executions", headers: harness.auth() + [("Content-Type", "application/json")], body: body)
        #expect(first.status == 200)
        #expect(first.headers["x-accel-buffering"] == "no")
        #expect(first.headers["content-type"]?.hasPrefix("text/event-stream") == true)
        let id = first.executionID

        // The client: reads until the finish frame, reconnecting through nginx with Last-Event-ID whenever its
        // connection ends early, and notes how long each reconnect took to deliver its next frame.
        let received = Mutex<[Frame]>([])
        let reader = Task {
            var stream = first
            var reconnects: [Duration] = []
            var cut: ContinuousClock.Instant?
            while true {
                var fresh = true
                _ = try? await readFrames(stream) { frames in
                    if fresh, let cut { reconnects.append(ContinuousClock.now - cut) }
                    fresh = false
                    received.withLock { $0 += frames.suffix(1) }
                    return frames.last?.finishReason != nil
                }
                if received.withLock({ $0.last?.finishReason != nil }) { return reconnects }
                stream.close()
                cut = ContinuousClock.now
                let last = received.withLock { $0.last?.event.id }
                while true {
                    let headers = harness.auth() + (last.map { [("Last-Event-ID", $0)] } ?? [])
                    if let next = try? await client.open(.GET, "/run/api/executions/\(id)/stream", headers: headers),
                        next.status == 200
                    {
                        stream = next
                        break
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
        }

        // Kill each gateway in turn (the first one restarted before the second dies): whichever served the stream,
        // it was cut at least once, and nginx sent the reconnect to a live gateway.
        #expect(try await eventually(20) { received.withLock { $0.count } >= 20 })
        gateways[0].killHard()
        try await Task.sleep(for: .milliseconds(500))
        try gateways[0].restart()
        #expect(try await gateways[0].ready())
        let countBefore = received.withLock { $0.count }
        #expect(try await eventually(20) { received.withLock { $0.count } > countBefore + 10 })
        gateways[1].killHard()

        let reconnects = try await reader.value
        #expect(!reconnects.isEmpty, "no kill cut the stream")
        // A reconnect is served at once: nothing waits for a backoff or a timeout.
        #expect(reconnects.allSatisfy { $0 < .seconds(2) }, "reconnects took \(reconnects)")

        // Every event, once, in order: what the client kept is the execution's whole log.
        let frames = received.withLock { $0 }
        let log = ExecutionStore.parseEntries(
            try await harness.redis.send("XRANGE", harness.store.keys.events(id), "-", "+"))
        #expect(frames.compactMap(\.event.id) == log.map(\.id))
        #expect(frames.last?.finishReason == "stop")
        #expect(replyText(frames).contains("400"))
    }
}
