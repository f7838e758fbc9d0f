import Yams

extension TetherConfig {
    /// Reads the `tools` section (`http`, `mcp`) into ``tools``, and tells `context` the names agents may now use.
    mutating func readTools(_ node: Node, file: String, context: inout ConfigContext) -> [ConfigProblem] {
        var problems: [ConfigProblem] = []
        if ConfigReader.isNull(node) { return problems }
        guard
            var reader = ConfigReader(
                node, path: "tools", file: file, expected: "a mapping (http, mcp)", problems: &problems)
        else { return problems }
        reader.refuseUnknown(["http", "mcp"], what: "tools")
        var taken = context.toolNames ?? []
        var sources = ToolSources()
        for (index, entry) in entries("http", of: reader, expected: "a list of HTTP tools", problems: &problems)
            .enumerated()
        {
            guard
                var tool = ConfigReader(
                    entry, path: "tools.http[\(index)]", file: file,
                    expected: "a mapping (name, description, inputSchema, url, …)", problems: &problems)
            else { continue }
            if let definition = Self.readHTTPTool(&tool, taken: taken, environment: context.environment) {
                sources.http.append(definition)
                taken.insert(definition.name)
            }
            problems += tool.problems
        }
        for (index, entry) in entries("mcp", of: reader, expected: "a list of MCP servers", problems: &problems)
            .enumerated()
        {
            guard
                var server = ConfigReader(
                    entry, path: "tools.mcp[\(index)]", file: file,
                    expected: "a mapping (name, command or url, needsApproval, allow, …)", problems: &problems)
            else { continue }
            if let definition = Self.readMCPServer(
                &server, taken: taken, servers: sources.mcp, environment: context.environment)
            {
                sources.mcp.append(definition)
                taken.insert(definition.name)
            }
            problems += server.problems
        }
        problems += reader.problems
        tools = sources
        context.toolNames = context.toolNames?.union(sources.http.map(\.name))
        context.servers = sources.mcp
        return problems
    }

    private func entries(
        _ name: String, of reader: ConfigReader, expected: String, problems: inout [ConfigProblem]
    ) -> [Node] {
        guard let node = reader.node(name) else { return [] }
        return ConfigReader.sequence(
            node, path: "\(reader.path).\(name)", file: reader.file, expected: expected, problems: &problems) ?? []
    }

    /// The problem of a tool (or server) name providers would refuse: every provider accepts 1–64 of
    /// `A-Z a-z 0-9 _ -`.
    public static func toolNameProblem(_ name: String) -> String? {
        let valid =
            (1...64).contains(name.utf8.count)
            && name.utf8.allSatisfy { Names.isAlphanumeric($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
        return valid
            ? nil : "must be 1-64 characters of A-Z a-z 0-9 _ - (what model providers accept), got \(JSON.quoted(name))"
    }

    private static func readHTTPTool(
        _ reader: inout ConfigReader, taken: Set<String>, environment: [String: String]?
    ) -> HTTPToolDefinition? {
        reader.refuseUnknown(
            [
                "name", "description", "inputSchema", "url", "headers", "forwardHeaders", "timeoutSeconds",
                "needsApproval",
            ], what: "an HTTP tool")
        let name = reader.text("name", required: true) { name in
            toolNameProblem(name) ?? (taken.contains(name) ? "\(JSON.quoted(name)) is already a tool's name" : nil)
        }
        let description = reader.text("description") ?? ""
        let schema = readSchema(&reader)
        let url = reader.text("url", required: true).flatMap { expanded($0, "url", &reader, environment) }
        if let url, let problem = baseURLProblem(url) { reader.problem("url", problem) }
        let headers = readHeaders(&reader, environment: environment)
        let forward = reader.texts("forwardHeaders", check: headerNameProblem)
        let timeout = reader.number("timeoutSeconds", 0.1...3600)
        let needsApproval = reader.boolean("needsApproval")
        guard let name, let url, reader.problems.isEmpty else { return nil }
        var tool = HTTPToolDefinition(
            name: name, description: description, inputSchema: schema ?? ["type": "object"], url: url)
        tool.headers = headers
        tool.forwardHeaders = (forward ?? []).map { $0.lowercased() }
        if let timeout { tool.timeoutSeconds = timeout }
        tool.needsApproval = needsApproval ?? false
        return tool
    }

    private static func readMCPServer(
        _ reader: inout ConfigReader, taken: Set<String>, servers: [MCPServerDefinition],
        environment: [String: String]?
    ) -> MCPServerDefinition? {
        reader.refuseUnknown(
            ["name", "command", "url", "headers", "needsApproval", "allow", "prefix", "timeoutSeconds"],
            what: "an MCP server")
        let name = reader.text("name", required: true) { name in
            toolNameProblem(name) ?? (taken.contains(name) ? "\(JSON.quoted(name)) is already a tool's name" : nil)
        }
        let command = reader.texts("command")?.compactMap { expanded($0, "command", &reader, environment) }
        let url = reader.text("url").flatMap { expanded($0, "url", &reader, environment) }
        if let url, let problem = baseURLProblem(url) { reader.problem("url", problem) }
        switch (command, url) {
        case (nil, nil): reader.problem("", "needs a command (stdio) or a url (streamable HTTP)")
        case (.some, .some): reader.problem("url", "cannot be given with a command: one transport per server")
        case (.some(let command), nil) where command.isEmpty: reader.problem("command", "must not be empty")
        default: break
        }
        let headers = readHeaders(&reader, environment: environment)
        if command != nil, !headers.isEmpty { reader.problem("headers", "apply to a url server only") }
        let policy = readApprovalPolicy(&reader)
        let allow = reader.texts("allow")
        let prefix = reader.text("prefix") { prefix in
            toolNameProblem(prefix) == nil
                ? nil : "must be 1-64 characters of A-Z a-z 0-9 _ -, got \(JSON.quoted(prefix))"
        }
        let timeout = reader.number("timeoutSeconds", 0.1...3600)
        guard let name, reader.problems.isEmpty else { return nil }
        var server = MCPServerDefinition(
            name: name, transport: url.map { .http(url: $0) } ?? .stdio(command: command ?? []))
        if let prefix { server.prefix = prefix }
        if let clash = servers.first(where: {
            $0.prefix.hasPrefix(server.prefix) || server.prefix.hasPrefix($0.prefix)
        }) {
            reader.problem(
                "prefix", "\(JSON.quoted(server.prefix)) overlaps the prefix of the MCP server \(clash.name)")
            return nil
        }
        if let clash = taken.sorted().first(where: { $0.hasPrefix(server.prefix) }) {
            reader.problem(
                prefix == nil ? "name" : "prefix",
                "its tools' prefix \(JSON.quoted(server.prefix)) would take in the tool \(clash); set another prefix")
            return nil
        }
        server.headers = headers
        server.needsApproval = policy ?? .never
        if let allow { server.allow = allow }
        if let timeout { server.timeoutSeconds = timeout }
        return server
    }

    /// `needsApproval`: `true`, `false`, or a list of tool name patterns.
    private static func readApprovalPolicy(_ reader: inout ConfigReader) -> ApprovalPolicy? {
        guard let node = reader.node("needsApproval") else { return nil }
        if node.scalar?.style == .plain, let value = node.bool { return value ? .always : .never }
        if let patterns = reader.texts("needsApproval") { return .matching(patterns) }
        reader.problem("needsApproval", "must be true, false, or a list of tool name patterns (\"delete_*\")")
        return nil
    }

    /// `inputSchema`: a JSON Schema of an object (a mapping whose `type`, when given, is `object`).
    private static func readSchema(_ reader: inout ConfigReader) -> JSON? {
        guard let schema = reader.json("inputSchema", expected: "a JSON Schema (a mapping)") else { return nil }
        guard case .object(let rules) = schema else {
            reader.problem("inputSchema", "must be a JSON Schema (a mapping)")
            return nil
        }
        if let type = rules["type"], type != "object" {
            reader.problem("inputSchema", "must describe an object (type: object), got type \(type.rendered)")
            return nil
        }
        return schema
    }

    /// `headers`, each value's `${VAR}` replaced from the environment.
    private static func readHeaders(_ reader: inout ConfigReader, environment: [String: String]?) -> [String: String] {
        let raw = reader.textMap("headers", checkName: headerNameProblem, checkValue: headerValueProblem) ?? [:]
        var headers: [String: String] = [:]
        for (name, value) in raw.sorted(by: { $0.key < $1.key }) {
            guard let value = expanded(value, "headers", &reader, environment) else { continue }
            if let problem = headerValueProblem(value) {
                reader.problem("headers", "\(name): its value from the environment \(problem)")
                continue
            }
            headers[name] = value
        }
        return headers
    }

    private static func expanded(
        _ text: String, _ field: String, _ reader: inout ConfigReader, _ environment: [String: String]?
    ) -> String? {
        switch ConfigReader.expand(text, environment: environment) {
        case .success(let value): return value
        case .failure(let problem):
            reader.problem(field, problem.message)
            return nil
        }
    }
}
