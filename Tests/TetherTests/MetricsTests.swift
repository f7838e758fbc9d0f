import Foundation
import TestSupport
import Testing
import TetherClient
import TetherCore

#if canImport(Glibc)
    import Glibc
#endif

/// `/metrics` of a real gateway process and a real worker process (`workers.metricsPort`), read with Prometheus's
/// own text-format parser (PyPI's `prometheus_client`, Debian's `python3-prometheus-client`).
@Suite("Prometheus metrics", .serialized, .timeLimit(.minutes(2)))
struct MetricsTests {
    /// A scrape: every sample by name and labels (`name{a="1",b="2"}`, labels sorted).
    struct Scrape {
        var samples: [String: Double] = [:]

        subscript(_ name: String, _ labels: [String: String] = [:]) -> Double {
            samples[Self.key(name, labels)] ?? 0
        }

        static func key(_ name: String, _ labels: [String: String]) -> String {
            labels.isEmpty
                ? name
                : name + "{"
                    + labels.sorted { $0.key < $1.key }.map { "\($0)=\"\($1)\"" }
                    .joined(separator: ",") + "}"
        }
    }

    /// Scrapes `/metrics` and parses it with `prometheus_client.parser`: a text it cannot parse fails the test.
    static func scrape(_ client: HTTPClient) async throws -> Scrape {
        let response = try await client.send(.GET, "/metrics")
        #expect(response.status == 200)
        #expect(response.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        let parser = Process()
        parser.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        parser.arguments = [
            "-c",
            """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            print(json.dumps([[s.name, s.labels, s.value]
                for family in text_string_to_metric_families(sys.stdin.read()) for s in family.samples]))
            """,
        ]
        let input = Pipe()
        let output = Pipe()
        parser.standardInput = input
        parser.standardOutput = output
        try parser.run()
        input.fileHandleForWriting.write(Data(response.body))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        parser.waitUntilExit()
        try #require(
            parser.terminationStatus == 0,
            "prometheus_client could not parse:\n\(String(decoding: response.body, as: UTF8.self))")
        var scrape = Scrape()
        for sample in try JSON.parse(Array(data)).arrayValue ?? [] {
            guard let sample = sample.arrayValue, sample.count == 3, let name = sample[0].stringValue else { continue }
            let labels = (sample[1].objectValue ?? [:]).compactMapValues(\.stringValue)
            scrape.samples[Scrape.key(name, labels)] = sample[2].numberValue ?? .nan
        }
        return scrape
    }

    @Test func theGatewayAndAWorkerServeMetricsThatParseAndMoveAsExecutionsRun() async throws {
        let harness = try await Harness.start(withWorker: false)
        defer { harness.stop() }
        let (gateway, gatewayPort) = try await startListening { port in
            try launch("gateway", harness, environment: ["TETHER_PORT": "\(port)"])
        }
        defer { if gateway.isRunning { kill(gateway.processIdentifier, SIGKILL) } }
        let (worker, workerPort) = try await startListening { port in
            try launch(
                "worker", harness,
                environment: [
                    "TETHER_WORKER_METRICS_PORT": "\(port)", "TETHER_HOST": "127.0.0.1",
                    "TETHER_DEMO_TOKEN_DELAY_MS": "0",
                ])
        }
        defer { if worker.isRunning { kill(worker.processIdentifier, SIGKILL) } }
        let client = HTTPClient(port: gatewayPort)
        let workerClient = HTTPClient(port: workerPort)
        #expect(try await eventually(20) { (try? await client.send(.GET, "/healthz").status) == 200 })
        #expect(try await eventually(20) { (try? await workerClient.send(.GET, "/healthz").status) == 200 })
        let gatewayBefore = try await Self.scrape(client)
        let workerBefore = try await Self.scrape(workerClient)
        #expect(workerBefore["tether_worker_slots"] == 32)

        // One execution to its end, with a tool; one left waiting for approval, its stream open.
        let body = { (text: String) in Array(#"{"messages":[{"role":"user","content":"\#(text)"}]}"#.utf8) }
        let headers = harness.auth() + [("Content-Type", "application/json")]
        let done = try await client.open(.POST, "/run/api/executions", headers: headers, body: body("weather in Oslo"))
        let frames = try await readFrames(done) { _ in false }
        let waiting = try await client.open(
            .POST, "/run/api/executions", headers: headers, body: body("email ivy@example.com"))
        _ = try await readFrames(waiting) { $0.contains { $0.type == "tool-approval-request" } }

        let gatewayDuring = try await Self.scrape(client)
        #expect(
            gatewayDuring["tether_executions_created_total"] - gatewayBefore["tether_executions_created_total"] == 2)
        #expect(gatewayDuring["tether_sse_clients"] == 1, "the waiting execution's stream")
        #expect(
            gatewayDuring["tether_events_delivered_total"] - gatewayBefore["tether_events_delivered_total"]
                >= Double(frames.count))
        #expect(
            gatewayDuring["tether_event_delivery_seconds_count"] > gatewayBefore["tether_event_delivery_seconds_count"])
        #expect(gatewayDuring["tether_redis_command_seconds_count", ["command": "EVALSHA"]] > 0)
        // The worker's own: appended events, the model and the tool, the finished execution, then the waiting one
        // (sampled every 5 s).
        var workerDuring = try await Self.scrape(workerClient)
        #expect(
            workerDuring["tether_events_appended_total"] - workerBefore["tether_events_appended_total"]
                >= Double(frames.count - 1))
        #expect(workerDuring["tether_executions_finished_total", ["status": "completed"]] == 1)
        #expect(workerDuring["tether_tool_calls_total", ["tool": "get_weather", "outcome": "output"]] == 1)
        #expect(workerDuring["tether_model_request_seconds_count", ["provider": "demo"]] >= 3)
        #expect(workerDuring["tether_model_tokens_total", ["provider": "demo", "direction": "output"]] > 0)
        #expect(workerDuring["tether_worker_slots_busy"] == 0, "the waiting execution is parked: it holds no slot")
        let deadline = ContinuousClock.now + .seconds(15)
        while workerDuring["tether_executions_waiting"] != 1, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(250))
            workerDuring = try await Self.scrape(workerClient)
        }
        #expect(workerDuring["tether_executions_waiting"] == 1)
        #expect(workerDuring["tether_oldest_waiting_seconds"] > 0)

        // A cancel is counted where it happens: on the gateway.
        let cancel = try await client.send(
            .POST, "/run/api/executions/\(waiting.executionID)/cancel", headers: harness.auth())
        #expect(cancel.status == 200)
        _ = try await readFrames(waiting) { _ in false }
        let gatewayAfter = try await Self.scrape(client)
        #expect(gatewayAfter["tether_executions_finished_total", ["status": "cancelled"]] == 1)
        #expect(gatewayAfter["tether_sse_clients"] == 0)
        // Hummingbird's request metrics come along (dots in names written as underscores; the parser reads the
        // counter hb_requests as hb_requests_total).
        #expect(
            gatewayAfter[
                "hb_requests_total",
                [
                    "http_route": "/run/api/executions", "http_request_method": "POST",
                    "http_response_status_code": "200",
                ]] == 2)
        kill(gateway.processIdentifier, SIGTERM)
        kill(worker.processIdentifier, SIGTERM)
        gateway.waitUntilExit()
        worker.waitUntilExit()
    }
}
