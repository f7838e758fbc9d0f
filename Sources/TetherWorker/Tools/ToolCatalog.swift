import AsyncHTTPClient
import TetherCore

/// A server that offers tools it lists itself (an MCP server): the list can change while the worker runs.
public protocol ToolServer: Sendable {
    /// The server's name: an agent that names it gets all of its (allowed) tools.
    var name: String { get }
    /// What its tools' names start with, as the model sees them.
    var prefix: String { get }
    /// Its tools now, allowed ones only, named with the prefix; none while it cannot be reached.
    func tools() async -> [any AgentTool]
}

/// Every tool an agent can name: the built-in ones, the configuration's HTTP tools, and the tools of its MCP
/// servers. ``tools(for:)`` resolves an agent's `tools` list: a tool's name, a server's name (all its tools), or a
/// server's tool by its prefixed name.
public struct ToolCatalog: Sendable {
    /// Tools that are always there, by name.
    public let fixed: [String: any AgentTool]
    /// Tool servers, by name.
    public let servers: [String: any ToolServer]

    /// A catalog of these tools and servers.
    public init(fixed: [String: any AgentTool], servers: [any ToolServer] = []) {
        self.fixed = fixed
        self.servers = Dictionary(servers.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The built-in tools and the configured HTTP tools (calls go through `client`).
    public init(config: ToolSources, servers: [any ToolServer] = [], client: HTTPClient = .shared) {
        var fixed = DemoTools.all
        for definition in config.http { fixed[definition.name] = HTTPTool(definition, client: client) }
        self.init(fixed: fixed, servers: servers)
    }

    /// The tools `agent` may call now, by name (a server that cannot be reached contributes none).
    public func tools(for agent: AgentDefinition) async -> [String: any AgentTool] {
        var result: [String: any AgentTool] = [:]
        for name in agent.tools {
            if let tool = fixed[name] {
                result[name] = tool
            } else if let server = servers[name] {
                for tool in await server.tools() { result[tool.descriptor.name] = tool }
            } else if let server = servers.values.first(where: { name.hasPrefix($0.prefix) }) {
                if let tool = await server.tools().first(where: { $0.descriptor.name == name }) { result[name] = tool }
            }
        }
        return result
    }
}
