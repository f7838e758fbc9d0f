import Yams

/// An agent of the configuration: which model it talks to, its instructions and tools, and its limits. An API key
/// belongs to one agent (`tether keys create --agent <id>`).
public struct AgentDefinition: Sendable, Equatable {
    /// The model providers Tether speaks.
    public enum Provider: String, Sendable, Equatable, CaseIterable {
        /// OpenAI's Chat Completions, and any server that speaks it (vLLM, Ollama, llama.cpp, LiteLLM…).
        case openai
        /// Anthropic's Messages API.
        case anthropic
        /// The built-in demo model: offline, no key.
        case demo
    }

    /// The model an agent talks to.
    public struct Model: Sendable, Equatable {
        /// Which API.
        public var provider: Provider
        /// The model's name at the provider (`gpt-4.1-mini`, `claude-sonnet-4-5`); `demo` for the demo.
        public var name: String
        /// The API's base URL (`https://api.openai.com/v1`); `nil` for the provider's default.
        public var baseURL: String?
        /// The environment variable that holds the API key (never the key itself); `nil` for none.
        public var apiKeyEnvironment: String?
        /// Extra request headers.
        public var headers: [String: String] = [:]
        /// Sampling temperature, when set.
        public var temperature: Double?
        /// Most tokens of one reply, when set (Anthropic requires one: 1024 when unset).
        public var maxOutputTokens: Int?
        /// Seconds one model request may take, from the request to the end of its stream.
        public var timeoutSeconds: Double = 120

        /// Makes a model.
        public init(provider: Provider, name: String) {
            self.provider = provider
            self.name = name
        }

        /// The provider's default base URL.
        public var resolvedBaseURL: String {
            if let baseURL { return baseURL }
            switch provider {
            case .openai: return "https://api.openai.com/v1"
            case .anthropic: return "https://api.anthropic.com"
            case .demo: return ""
            }
        }
    }

    /// The agent's id (a name: see ``Names``).
    public var id: String
    /// Its model.
    public var model: Model
    /// The system prompt, if any.
    public var system: String?
    /// The names of the tools it may call.
    public var tools: [String]
    /// Most model turns per execution.
    public var maxSteps: Int = 8
    /// Seconds a tool call waits for a human decision before it is denied ("approval timed out").
    public var approvalTimeoutSeconds: Int = 86_400

    /// Makes an agent.
    public init(id: String, model: Model, system: String? = nil, tools: [String] = []) {
        self.id = id
        self.model = model
        self.system = system
        self.tools = tools
    }

    /// The built-in demo agent: the demo model and its three tools. It exists unless the file defines an agent
    /// named `demo`.
    public static let demo = AgentDefinition(
        id: "demo", model: Model(provider: .demo, name: "demo"), tools: ["get_weather", "get_time", "send_email"])
}

/// What reading a configuration can check beyond the file: the environment (an agent's `apiKeyEnv` must be set) and
/// the tools that exist (an agent's `tools` must name them).
public struct ConfigContext: Sendable {
    /// The process environment, or `nil` not to check variables.
    public var environment: [String: String]?
    /// The tool names agents may use, or `nil` not to check them.
    public var toolNames: Set<String>?

    /// The MCP servers of the file: an agent names all of a server's tools by its name, or one by its prefix and
    /// the tool's own name (which only the server knows: checked when it lists its tools).
    var servers: [MCPServerDefinition] = []

    /// Makes a context.
    public init(environment: [String: String]? = nil, toolNames: Set<String>? = nil) {
        self.environment = environment
        self.toolNames = toolNames
    }

    /// The problem of a name in an agent's `tools`, or `nil` when it names a tool or a server.
    func toolProblem(_ name: String) -> String? {
        guard let names = toolNames, !names.contains(name) else { return nil }
        if servers.contains(where: { $0.name == name }) { return nil }
        if let server = servers.first(where: { name.hasPrefix($0.prefix) && name.count > $0.prefix.count }) {
            let tool = String(name.dropFirst(server.prefix.count))
            return server.allows(tool)
                ? nil
                : "the MCP server \(server.name) does not allow its tool \(JSON.quoted(tool)) (see its allow list)"
        }
        let known = names.sorted() + servers.map { "\($0.name) (an MCP server)" }
        return "unknown tool \(JSON.quoted(name)); the tools are \(known.joined(separator: ", "))"
    }
}

extension TetherConfig {
    /// The agent named `id`, if configured (the built-in demo included).
    public func agent(_ id: String) -> AgentDefinition? { agents.first { $0.id == id } }

    mutating func readAgents(_ node: Node, file: String, context: ConfigContext) -> [ConfigProblem] {
        var problems: [ConfigProblem] = []
        guard
            let entries = ConfigReader.sequence(
                node, path: "agents", file: file, expected: "a list of agents", problems: &problems)
        else { return problems }
        var agents: [AgentDefinition] = []
        for (index, entry) in entries.enumerated() {
            guard
                var reader = ConfigReader(
                    entry, path: "agents[\(index)]", file: file, expected: "a mapping (id, model, system, tools…)",
                    problems: &problems)
            else { continue }
            if let agent = Self.readAgent(&reader, index: index, known: agents, context: context) {
                agents.append(agent)
            }
            problems += reader.problems
        }
        if !agents.contains(where: { $0.id == AgentDefinition.demo.id }) { agents.append(.demo) }
        self.agents = agents
        return problems
    }

    private static func readAgent(
        _ reader: inout ConfigReader, index: Int, known: [AgentDefinition], context: ConfigContext
    ) -> AgentDefinition? {
        reader.refuseUnknown(
            ["id", "model", "system", "tools", "maxSteps", "approvalTimeoutSeconds"], what: "an agent")
        let id = reader.text("id", required: true) { id in
            if let problem = Names.problem(id) { return problem }
            return known.contains { $0.id == id } ? "\(JSON.quoted(id)) is declared twice" : nil
        }
        let model = reader.nested("model", expected: "a mapping (provider, name, …)", required: true) {
            readModel(&$0, context: context)
        }
        let system = reader.text("system")
        let tools = reader.texts("tools", check: context.toolProblem) ?? []
        let maxSteps = reader.integer("maxSteps", 1...1000)
        let approvalTimeout = reader.integer("approvalTimeoutSeconds", 1...366 * 86400)
        guard let id, let model, reader.problems.isEmpty else { return nil }
        var agent = AgentDefinition(id: id, model: model, system: system, tools: tools)
        if let maxSteps { agent.maxSteps = maxSteps }
        if let approvalTimeout { agent.approvalTimeoutSeconds = approvalTimeout }
        return agent
    }

    private static func readModel(_ reader: inout ConfigReader, context: ConfigContext) -> AgentDefinition.Model? {
        reader.refuseUnknown(
            [
                "provider", "name", "baseURL", "apiKeyEnv", "headers", "temperature", "maxOutputTokens",
                "timeoutSeconds",
            ],
            what: "a model")
        let providers = AgentDefinition.Provider.allCases.map(\.rawValue)
        let provider = reader.text("provider", required: true) { name in
            providers.contains(name)
                ? nil : "must be one of \(providers.joined(separator: ", ")), got \(JSON.quoted(name))"
        }.flatMap(AgentDefinition.Provider.init(rawValue:))
        let name = reader.text("name", required: provider != .demo) { name in
            name.isEmpty || name.utf8.count > 256 ? "must be 1-256 characters" : nil
        }
        let baseURL = reader.text("baseURL", check: baseURLProblem)
        let apiKeyEnv = reader.text("apiKeyEnv") { variable in
            guard isEnvironmentName(variable) else {
                return "must be the name of an environment variable (A-Z 0-9 _), not the key itself"
            }
            if let environment = context.environment, (environment[variable] ?? "").isEmpty {
                return "names \(variable), which is not set in the environment"
            }
            return nil
        }
        if provider == .anthropic, !reader.has("apiKeyEnv") {
            reader.problem("apiKeyEnv", "is required for the anthropic provider (the variable holding the key)")
        }
        let headers = reader.textMap("headers", checkName: headerNameProblem, checkValue: headerValueProblem)
        let temperature = reader.number("temperature", 0...2)
        let maxOutputTokens = reader.integer("maxOutputTokens", 1...1_000_000)
        let timeout = reader.number("timeoutSeconds", 1...3600)
        guard let provider, reader.problems.isEmpty else { return nil }
        var model = AgentDefinition.Model(provider: provider, name: name ?? provider.rawValue)
        model.baseURL = baseURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        model.apiKeyEnvironment = apiKeyEnv
        model.headers = headers ?? [:]
        model.temperature = temperature
        model.maxOutputTokens = maxOutputTokens
        if let timeout { model.timeoutSeconds = timeout }
        return model
    }

    /// The problem of a URL that is not `http://` or `https://` with a host, or `nil`.
    static func baseURLProblem(_ url: String) -> String? {
        for scheme in ["http://", "https://"] where url.hasPrefix(scheme) {
            let rest = url.dropFirst(scheme.count)
            if !rest.isEmpty, !rest.hasPrefix("/"), !rest.utf8.contains(where: { $0 <= 0x20 || $0 >= 0x7F }) {
                return nil
            }
        }
        return "must be an http:// or https:// URL, got \(JSON.quoted(url))"
    }

    private static func isEnvironmentName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")) else {
            return false
        }
        return name.utf8.allSatisfy {
            ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z")) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9"))
                || $0 == UInt8(ascii: "_") || ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z"))
        }
    }

    /// The problem of a header name that is not an HTTP token, or `nil`.
    static func headerNameProblem(_ name: String) -> String? {
        !name.isEmpty && name.utf8.allSatisfy(isTokenByte) ? nil : "is not a valid header name"
    }

    /// The problem of a header value with a line break (or a NUL) in it, or `nil`.
    static func headerValueProblem(_ value: String) -> String? {
        value.utf8.contains { $0 == 13 || $0 == 10 || $0 == 0 } ? "must not contain a line break" : nil
    }

    static func isTokenByte(_ b: UInt8) -> Bool {
        Names.isAlphanumeric(b) || "!#$%&'*+-.^_`|~".utf8.contains(b)
    }
}
