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

    static let tools: Set<String> = ["get_weather", "get_time", "send_email"]
    static let agentContext = ConfigContext(
        environment: ["OPENAI_API_KEY": "sk-test", "ANTHROPIC_KEY": "x"], toolNames: tools)

    @Test func agentsAreReadWithTheirModels() throws {
        let config = try TetherConfig.parse(
            yaml: """
                agents:
                  - id: support
                    model:
                      provider: openai
                      name: gpt-4.1-mini
                      baseURL: https://api.openai.com/v1/
                      apiKeyEnv: OPENAI_API_KEY
                      headers: {OpenAI-Organization: org-1}
                      temperature: 0.2
                      maxOutputTokens: 1024
                      timeoutSeconds: 120
                    system: "You are helpful."
                    tools: [get_weather, send_email]
                    maxSteps: 8
                    approvalTimeoutSeconds: 86400
                  - id: claude
                    model: {provider: anthropic, name: claude-sonnet-4-5, apiKeyEnv: ANTHROPIC_KEY}
                  - id: local
                    model: {provider: openai, name: llama3.2, baseURL: "http://127.0.0.1:11434/v1"}
                """, context: Self.agentContext)
        #expect(config.agents.map(\.id) == ["support", "claude", "local", "demo"])
        let support = try #require(config.agent("support"))
        #expect(support.model.provider == .openai)
        #expect(support.model.baseURL == "https://api.openai.com/v1")
        #expect(support.model.apiKeyEnvironment == "OPENAI_API_KEY")
        #expect(support.model.headers == ["OpenAI-Organization": "org-1"])
        #expect(support.model.temperature == 0.2)
        #expect(support.model.maxOutputTokens == 1024)
        #expect(support.system == "You are helpful.")
        #expect(support.tools == ["get_weather", "send_email"])
        #expect(config.agent("claude")?.model.resolvedBaseURL == "https://api.anthropic.com")
        #expect(config.agent("local")?.model.apiKeyEnvironment == nil)
        #expect(config.agent("local")?.maxSteps == 8)
        #expect(try TetherConfig.parse(yaml: "").agents == [.demo])
    }

    @Test(arguments: [
        ("agents:\n  - id: a\n    model: {provider: gemini, name: g}", "agents[0].model.provider", "one of openai"),
        ("agents:\n  - id: a\n    model: {provider: openai}", "agents[0].model.name", "required"),
        (
            "agents:\n  - id: a\n    model: {provider: openai, name: m, apiKeyEnv: NOT_SET}",
            "agents[0].model.apiKeyEnv",
            "not set"
        ),
        (
            "agents:\n  - id: a\n    model: {provider: openai, name: m, apiKeyEnv: sk-abc123}",
            "agents[0].model.apiKeyEnv",
            "not the key itself"
        ),
        ("agents:\n  - id: a\n    model: {provider: anthropic, name: m}", "agents[0].model.apiKeyEnv", "required"),
        (
            "agents:\n  - id: a\n    model: {provider: openai, name: m, baseURL: ftp://x}", "agents[0].model.baseURL",
            "http"
        ),
        (
            "agents:\n  - id: a\n    model: {provider: openai, name: m, temperature: 3}", "agents[0].model.temperature",
            "from 0 to 2"
        ),
        ("agents:\n  - id: a\n    model: {provider: openai, name: m, key: x}", "agents[0].model.key", "unknown field"),
        (
            "agents:\n  - id: a\n    model: {provider: demo}\n    tools: [get_wether]", "agents[0].tools[0]",
            "unknown tool"
        ),
        ("agents:\n  - id: a\n    model: {provider: demo}\n    maxSteps: 0", "agents[0].maxSteps", "from 1"),
        ("agents:\n  - id: 'a:b'\n    model: {provider: demo}", "agents[0].id", "characters of"),
        (
            "agents:\n  - id: a\n    model: {provider: demo}\n  - id: a\n    model: {provider: demo}", "agents[1].id",
            "declared twice"
        ),
        ("agents:\n  - id: a", "agents[0].model", "required"),
        ("agents:\n  - id: a\n    model: {provider: demo}\n    prompt: hi", "agents[0].prompt", "unknown field"),
        (
            "agents:\n  - id: a\n    model: {provider: openai, name: m, headers: {'bad name': x}}",
            "agents[0].model.headers.bad name", "header name"
        ),
    ])
    func aBadAgentIsRefusedNamingItsField(yaml: String, field: String, problem: String) throws {
        let error = try #require(throws: ConfigError.self) {
            try TetherConfig.parse(yaml: yaml, file: "agents.yaml", context: Self.agentContext)
        }
        #expect(error.problems.contains { $0.field == field && $0.problem.contains(problem) }, "\(error)")
        #expect(error.problems.allSatisfy { $0.source.hasPrefix("agents.yaml:") }, "\(error)")
    }

    @Test func toolsAreReadWithEnvironmentReferencesReplacedAndAgentsMayNameThem() throws {
        let config = try TetherConfig.parse(
            yaml: """
                agents:
                  - id: support
                    model: {provider: demo}
                    tools: [create_ticket, files, wiki_search, get_time]
                tools:
                  http:
                    - name: create_ticket
                      description: "Opens a support ticket"
                      inputSchema: {type: object, required: [title], properties: {title: {type: string}, n: {type: integer, minimum: 1}}}
                      url: https://tickets.internal/api/tickets
                      headers: {Authorization: "Bearer ${TICKETS_TOKEN}"}
                      forwardHeaders: [X-User-Id]
                      timeoutSeconds: 30
                      needsApproval: true
                  mcp:
                    - name: files
                      command: [python3, -m, my_mcp_server]
                      needsApproval: ["delete_*", "write_*"]
                      allow: ["*"]
                    - name: wiki
                      url: http://127.0.0.1:9000/mcp
                      headers: {X-Key: "${WIKI_KEY}"}
                      needsApproval: false
                """, file: "tools.yaml",
            context: ConfigContext(
                environment: ["TICKETS_TOKEN": "tok-1", "WIKI_KEY": "wk"], toolNames: Self.tools))
        let ticket = try #require(config.tools.http.first)
        #expect(ticket.name == "create_ticket")
        #expect(ticket.headers == ["Authorization": "Bearer tok-1"])
        #expect(ticket.forwardHeaders == ["x-user-id"])
        #expect(ticket.needsApproval)
        #expect(ticket.timeoutSeconds == 30)
        #expect(ticket.inputSchema["properties"]?["n"]?["minimum"] == 1)
        #expect(ticket.inputSchema["required"] == ["title"])
        let files = config.tools.mcp[0]
        #expect(files.transport == .stdio(command: ["python3", "-m", "my_mcp_server"]))
        #expect(files.prefix == "files_")
        #expect(files.needsApproval.needsApproval("delete_file") && !files.needsApproval.needsApproval("read_file"))
        let wiki = config.tools.mcp[1]
        #expect(wiki.transport == .http(url: "http://127.0.0.1:9000/mcp"))
        #expect(wiki.headers == ["X-Key": "wk"])
        #expect(wiki.needsApproval == .never)
        #expect(config.agent("support")?.tools == ["create_ticket", "files", "wiki_search", "get_time"])
    }

    @Test(arguments: [
        ("tools:\n  http:\n    - {url: http://x}", "tools.http[0].name", "required"),
        ("tools:\n  http:\n    - {name: t}", "tools.http[0].url", "required"),
        ("tools:\n  http:\n    - {name: 'a.b', url: http://x}", "tools.http[0].name", "what model providers accept"),
        ("tools:\n  http:\n    - {name: get_time, url: http://x}", "tools.http[0].name", "already a tool's name"),
        ("tools:\n  http:\n    - {name: t, url: ftp://x}", "tools.http[0].url", "http"),
        ("tools:\n  http:\n    - {name: t, url: http://x, headers: {A: '${NOPE}'}}", "tools.http[0].headers", "NOPE"),
        ("tools:\n  http:\n    - {name: t, url: http://x, inputSchema: [1]}", "tools.http[0].inputSchema", "mapping"),
        (
            "tools:\n  http:\n    - {name: t, url: http://x, inputSchema: {type: string}}", "tools.http[0].inputSchema",
            "object"
        ),
        (
            "tools:\n  http:\n    - {name: t, url: http://x, needsApproval: maybe}", "tools.http[0].needsApproval",
            "true"
        ),
        ("tools:\n  http:\n    - {name: t, url: http://x, timeoutSeconds: 0}", "tools.http[0].timeoutSeconds", "from"),
        ("tools:\n  http:\n    - {name: t, url: http://x, method: GET}", "tools.http[0].method", "unknown field"),
        ("tools:\n  mcp:\n    - {name: s}", "tools.mcp[0]", "command"),
        ("tools:\n  mcp:\n    - {name: s, command: [x], url: http://x}", "tools.mcp[0].url", "one transport"),
        ("tools:\n  mcp:\n    - {name: s, command: [x], headers: {A: b}}", "tools.mcp[0].headers", "url server"),
        ("tools:\n  mcp:\n    - {name: s, command: [x], needsApproval: 3}", "tools.mcp[0].needsApproval", "patterns"),
        (
            "tools:\n  mcp:\n    - {name: s, command: [x]}\n    - {name: s2, command: [y], prefix: s_}",
            "tools.mcp[1].prefix", "overlaps"
        ),
        ("tools:\n  ftp: []", "tools.ftp", "unknown field"),
        ("tools:\n  mcp:\n    - {name: s, command: [x], prefix: ''}", "tools.mcp[0].prefix", "1-64"),
        (
            "tools:\n  http:\n    - {name: files_x, url: http://x}\n  mcp:\n    - {name: files, command: [x]}",
            "tools.mcp[0].name", "would take in the tool files_x"
        ),
        (
            "tools:\n  mcp:\n    - {name: s, command: [x], allow: [read_*]}\nagents:\n  - id: a\n    model: {provider: demo}\n    tools: [s_write]",
            "agents[0].tools[0]", "does not allow"
        ),
    ])
    func aBadToolIsRefusedNamingItsField(yaml: String, field: String, problem: String) throws {
        let error = try #require(throws: ConfigError.self) {
            try TetherConfig.parse(yaml: yaml, file: "tools.yaml", context: Self.agentContext)
        }
        #expect(error.problems.contains { $0.field == field && $0.problem.contains(problem) }, "\(error)")
    }

    @Test func namePatterns() {
        #expect(NamePattern.matches("*", ""))
        #expect(NamePattern.matches("delete_*", "delete_file"))
        #expect(!NamePattern.matches("delete_*", "read_file"))
        #expect(NamePattern.matches("*_file", "write_file"))
        #expect(NamePattern.matches("a?c", "abc") && !NamePattern.matches("a?c", "ac"))
        #expect(NamePattern.matches("*a*b*", "xxaxxbxx") && !NamePattern.matches("*a*b*", "xxbxxaxx"))
        #expect(ApprovalPolicy.always.needsApproval("x") && !ApprovalPolicy.never.needsApproval("x"))
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
