import Foundation
import Testing
import TetherCore

/// The shipped configuration file.
let shippedConfigPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../config/tether.yaml").standardizedFileURL.path

@Suite("Configuration: file, environment, ranges")
struct ConfigTests {
    @Test func fileThenEnvironment() throws {
        var config = try TetherConfig.parse(
            yaml: """
                redis:
                  url: redis://example:6380/2
                http:
                  port: 9000
                  corsAllowedOrigins: [https://app.example.com, "http://localhost:3000"]
                apiKeys:
                  - {id: k1, tenant: t, agent: a, secretSha256: \(String(repeating: "ab", count: 32))}
                """)
        #expect(config.redis.url == "redis://example:6380/2")
        #expect(config.redis.prefix == "tether")
        #expect(config.http.port == 9000)
        #expect(config.http.heartbeatSeconds == 15)
        #expect(config.http.corsAllowedOrigins == ["https://app.example.com", "http://localhost:3000"])
        #expect(config.apiKeys.first?.id == "k1")
        try config.applyEnvironment(["TETHER_PORT": "9100", "TETHER_REDIS_URL": "redis://other:1", "TETHER_HOST": ""])
        #expect(config.http.port == 9100)
        #expect(config.redis.url == "redis://other:1")
        #expect(config.http.host == "127.0.0.1")
    }

    @Test func theShippedFileHoldsEverySettingWithItsDefault() throws {
        let shipped = try TetherConfig.load(file: shippedConfigPath, environment: [:])
        #expect(shipped == TetherConfig())
        let text = try String(contentsOfFile: shippedConfigPath, encoding: .utf8)
        for setting in TetherConfig.settings {
            let field = setting.path.split(separator: ".").last!
            #expect(text.contains("\n  \(field):"), "config/tether.yaml does not show \(setting.path)")
        }
        #expect(try TetherConfig.parse(yaml: "") == TetherConfig())
    }

    @Test func operationsDocsListEverySettingWithItsRange() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../docs/operations.md").path
        let docs = try String(contentsOfFile: path, encoding: .utf8)
        for setting in TetherConfig.settings {
            let row = docs.split(separator: "\n").first { $0.hasPrefix("| `\(setting.path)` |") }
            #expect(row != nil, "docs/operations.md has no row for \(setting.path)")
            if setting.rangeDescription.hasPrefix("a ") && !setting.rangeDescription.hasPrefix("a list") {
                #expect(row?.contains(setting.rangeDescription) == true, "\(setting.path): \(setting.rangeDescription)")
            }
        }
    }

    @Test(arguments: [
        ("http:\n  heartbeatSeconds: 0", "http.heartbeatSeconds", "from 0.05 to 3600"),
        ("http:\n  heartbeatSeconds: .nan", "http.heartbeatSeconds", "a number"),
        ("http:\n  port: 70000", "http.port", "from 0 to 65535"),
        ("http:\n  port: eighty", "http.port", "a whole number"),
        ("http:\n  port:", "http.port", "a whole number"),
        ("http:\n  bodyLimitBytes: 10", "http.bodyLimitBytes", "from 1024"),
        ("http:\n  keyCacheSeconds: -1", "http.keyCacheSeconds", "from 0"),
        ("http:\n  keyCacheEntries: 0", "http.keyCacheEntries", "from 1"),
        ("http:\n  backlog: 0", "http.backlog", "from 1"),
        ("http:\n  clientQueueLength: 0", "http.clientQueueLength", "from 1"),
        ("http:\n  headerTimeoutSeconds: 0", "http.headerTimeoutSeconds", "from 0.05"),
        ("http:\n  bodyTimeoutSeconds: 0", "http.bodyTimeoutSeconds", "from 0.05"),
        ("http:\n  idleTimeoutSeconds: 0", "http.idleTimeoutSeconds", "from 0.05"),
        ("http:\n  host: ''", "http.host", "host name"),
        ("http:\n  corsAllowedOrigins: [app.example.com]", "http.corsAllowedOrigins", "origin like"),
        ("http:\n  prot: 8080", "http.prot", "unknown field"),
        ("http: 8080", "http", "mapping"),
        ("htp:\n  port: 8080", "htp", "unknown section"),
        ("redis:\n  url: ftp://example", "redis.url", "not a Redis URL"),
        ("redis:\n  prefix: 'a{b}'", "redis.prefix", "characters of"),
        ("redis:\n  poolSize: 0", "redis.poolSize", "from 1 to 1024"),
        ("redis:\n  commandTimeoutMilliseconds: 1", "redis.commandTimeoutMilliseconds", "from 10"),
        ("streams:\n  maxLength: 0", "streams.maxLength", "from 1"),
        ("streams:\n  retentionSeconds: 0", "streams.retentionSeconds", "from 1"),
        ("workers:\n  concurrency: 0", "workers.concurrency", "from 1"),
        ("workers:\n  leaseSeconds: 0", "workers.leaseSeconds", "from 0.1"),
        ("demo:\n  tokenDelayMilliseconds: -1", "demo.tokenDelayMilliseconds", "from 0"),
        ("apiKeys: {id: k}", "apiKeys", "list"),
        (
            "apiKeys:\n  - {id: k, tenant: 'a:b', agent: c, secretSha256: \(String(repeating: "0", count: 64))}",
            "apiKeys[0].tenant", "characters of"
        ),
        (
            "apiKeys:\n  - {id: k, tenant: a, agent: '', secretSha256: \(String(repeating: "0", count: 64))}",
            "apiKeys[0].agent", "must not be empty"
        ),
        (
            "apiKeys:\n  - {id: k-1, tenant: a, agent: b, secretSha256: \(String(repeating: "0", count: 64))}",
            "apiKeys[0].id", "A-Z a-z 0-9"
        ),
        ("apiKeys:\n  - {id: k, tenant: a, agent: b, secretSha256: abc}", "apiKeys[0].secretSha256", "64 hex"),
        ("apiKeys:\n  - {id: k, tenant: a, agent: b}", "apiKeys[0].secretSha256", "required"),
        (
            "apiKeys:\n  - {id: k, tenant: a, agent: b, secret: x, secretSha256: \(String(repeating: "0", count: 64))}",
            "apiKeys[0].secret", "unknown field"
        ),
        ("http: [unclosed", "-", "not valid YAML"),
    ])
    func aBadValueIsRefusedNamingFileFieldAndProblem(yaml: String, field: String, problem: String) throws {
        let error = try #require(throws: ConfigError.self) { try TetherConfig.parse(yaml: yaml, file: "test.yaml") }
        let found = try #require(error.problems.first)
        #expect(found.field == field, "\(error)")
        #expect(found.problem.contains(problem), "\(error)")
        #expect(found.source.hasPrefix("test.yaml"), "\(error)")
        #expect(error.description.hasPrefix("test.yaml"))
    }

    @Test func everyProblemIsReportedWithItsLine() throws {
        let error = try #require(throws: ConfigError.self) {
            try TetherConfig.parse(
                yaml: "http:\n  port: 0\n  heartbeatSeconds: 0\nworkers:\n  concurrency: 0\n", file: "t.yaml")
        }
        #expect(
            error.problems.map(\.description) == [
                "t.yaml:3: http.heartbeatSeconds: must be a number from 0.05 to 3600, got \"0\"",
                "t.yaml:5: workers.concurrency: must be a whole number from 1 to 100000, got \"0\"",
            ])
    }

    @Test func aBadEnvironmentValueIsRefusedNamingTheVariable() throws {
        let error = try #require(throws: ConfigError.self) {
            try TetherConfig.load(
                file: nil, environment: ["TETHER_PORT": "abc", "TETHER_HEARTBEAT_SECONDS": "0", "TETHER_PREFIX": "a b"])
        }
        let sources = error.problems.map(\.source)
        #expect(sources.contains("environment variable TETHER_PORT"))
        #expect(sources.contains("environment variable TETHER_HEARTBEAT_SECONDS"))
        #expect(sources.contains("environment variable TETHER_PREFIX"))
    }

    @Test func namesRules() {
        for good in ["acme", "a", "Acme-1.prod_x", String(repeating: "a", count: 64)] {
            #expect(Names.problem(good) == nil, "\(good)")
        }
        for bad in ["", "a:b", "a b", "{a}", "-a", ".a", String(repeating: "a", count: 65), "é"] {
            #expect(Names.problem(bad) != nil, "\(bad)")
        }
    }
}
