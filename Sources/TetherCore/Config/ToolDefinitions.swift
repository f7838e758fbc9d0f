/// The tools of the configuration beyond the built-in ones (`tools:` in `config/tether.yaml`): HTTP endpoints of
/// the user's own services, and MCP servers. An agent's `tools` list names them.
public struct ToolSources: Sendable, Equatable {
    /// HTTP tools, each one endpoint.
    public var http: [HTTPToolDefinition] = []
    /// MCP servers, each offering the tools it lists.
    public var mcp: [MCPServerDefinition] = []

    /// No tools.
    public init(http: [HTTPToolDefinition] = [], mcp: [MCPServerDefinition] = []) {
        self.http = http
        self.mcp = mcp
    }
}

/// A tool that is one HTTP endpoint: each call POSTs its JSON arguments there, and a 2xx JSON answer is the output.
public struct HTTPToolDefinition: Sendable, Equatable {
    /// The name the model calls it by (1–64 of `A-Z a-z 0-9 _ -`, which every provider accepts).
    public var name: String
    /// What it does, for the model.
    public var description: String
    /// The JSON Schema of its arguments (an object schema); calls that break it never reach the endpoint.
    public var inputSchema: JSON
    /// The endpoint (`http://` or `https://`).
    public var url: String
    /// Headers sent with every call, `${VAR}` already replaced from the environment.
    public var headers: [String: String] = [:]
    /// The request's `forwardedHeaders` sent along (lower-case names); the configured headers win over them.
    public var forwardHeaders: [String] = []
    /// Seconds one call may take, connection included.
    public var timeoutSeconds: Double = 30
    /// Whether each call waits for a human decision.
    public var needsApproval = false

    /// Makes a definition.
    public init(name: String, description: String, inputSchema: JSON, url: String) {
        self.name = name
        self.description = description
        self.inputSchema = inputSchema
        self.url = url
    }
}

/// An MCP server whose tools an agent may call: started as a process that speaks over stdio, or reached over
/// streamable HTTP.
public struct MCPServerDefinition: Sendable, Equatable {
    /// How the server is reached.
    public enum Transport: Sendable, Equatable {
        /// A process started (and restarted after a crash) by each worker: the command and its arguments.
        case stdio(command: [String])
        /// Streamable HTTP at this URL.
        case http(url: String)
    }

    /// The server's name: an agent names all of its tools with it.
    public var name: String
    /// How it is reached.
    public var transport: Transport
    /// Headers of the HTTP transport, `${VAR}` already replaced; the request's `forwardedHeaders` are merged in
    /// without overriding them.
    public var headers: [String: String] = [:]
    /// Which of its tools need a human decision.
    public var needsApproval = ApprovalPolicy.never
    /// Name patterns of the tools agents may use (`*` for all).
    public var allow: [String] = ["*"]
    /// What its tools' names start with as the model sees them: `files_read_file` for the prefix `files_` (the
    /// default is the server's name and `_`, since providers accept no `.` in tool names).
    public var prefix: String
    /// Seconds one call may take.
    public var timeoutSeconds: Double = 60

    /// Makes a definition with the default prefix.
    public init(name: String, transport: Transport) {
        self.name = name
        self.transport = transport
        self.prefix = name + "_"
    }

    /// Whether agents may use the server's tool `name` (its own name, without the prefix).
    public func allows(_ name: String) -> Bool { allow.contains { NamePattern.matches($0, name) } }
}

/// Whether a tool's calls wait for a human decision.
public enum ApprovalPolicy: Sendable, Equatable {
    /// Every call does.
    case always
    /// No call does.
    case never
    /// Calls of the tools whose names match one of these patterns do (`*` matches any run of characters, `?` one).
    case matching([String])

    /// Whether calls of the tool `name` wait for a decision.
    public func needsApproval(_ name: String) -> Bool {
        switch self {
        case .always: return true
        case .never: return false
        case .matching(let patterns): return patterns.contains { NamePattern.matches($0, name) }
        }
    }
}

/// Shell-style name patterns: `*` matches any run of characters (none included), `?` exactly one, anything else
/// itself.
public enum NamePattern {
    /// Whether `name` matches `pattern`.
    public static func matches(_ pattern: String, _ name: String) -> Bool {
        let p = Array(pattern.unicodeScalars)
        let n = Array(name.unicodeScalars)
        var pi = 0
        var ni = 0
        var star: Int?
        var resume = 0
        while ni < n.count {
            if pi < p.count, p[pi] == "?" || p[pi] == n[ni] {
                pi += 1
                ni += 1
            } else if pi < p.count, p[pi] == "*" {
                star = pi
                resume = ni
                pi += 1
            } else if let star {
                pi = star + 1
                resume += 1
                ni = resume
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}
