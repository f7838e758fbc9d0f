import AsyncHTTPClient
import Foundation
import Logging
import MCP
import Synchronization
import TetherCore

/// One configured MCP server, as each worker process uses it: a connection made when first needed (the process
/// started, or the HTTP session opened), its tools listed with `tools/list` and listed again on
/// `notifications/tools/list_changed`, and calls made with `tools/call`. ``MCPSupervisor`` decides when to
/// connect: again at once after the connection ended (a crashed server is started again), after a backoff when it
/// could not be made.
///
/// Calls carrying forwarded headers to a streamable HTTP server go through a session of their own, opened with the
/// configured headers plus the forwarded ones (configured ones win, as Inkeep does), and closed after the call.
public actor MCPToolServer: ToolServer {
    /// A connection: the SDK's client over one of Tether's transports, and the tools it listed.
    struct Session: Sendable {
        let client: Client
        var tools: [Tool]
    }

    /// The server as configured.
    public let definition: MCPServerDefinition
    /// Its name.
    public nonisolated var name: String { definition.name }
    /// What its tools' names start with.
    public nonisolated var prefix: String { definition.prefix }
    let httpClient: HTTPClient
    let logger: Logger
    private var supervisor = MCPSupervisor<Session>()
    private var connecting: Task<Session, any Error>?

    /// Makes the server's handle; nothing connects before the first use.
    public init(_ definition: MCPServerDefinition, httpClient: HTTPClient = .shared, logger: Logger) {
        self.definition = definition
        self.httpClient = httpClient
        var logger = logger
        logger[metadataKey: "mcp"] = .string(definition.name)
        self.logger = logger
    }

    /// The allowed tools, named with the prefix; none while the server cannot be reached.
    public func tools() async -> [any AgentTool] {
        guard let session = await session() else { return [] }
        return session.tools.filter { tool in
            guard definition.allows(tool.name) else { return false }
            // A name a model provider would refuse would fail every turn: leave the tool out.
            if let problem = TetherConfig.toolNameProblem(prefix + tool.name) {
                logger.warning("MCP server \(name): tool \(tool.name) left out: its name \(problem)")
                return false
            }
            return true
        }.map { MCPTool(server: self, tool: $0) }
    }

    /// The current connection, made if there is none (and the backoff allows); `nil` when the server is unavailable.
    func session() async -> Session? {
        await relisting?.value
        switch supervisor.want(at: .now) {
        case .use(let session):
            return session
        case .unavailable:
            return nil
        case .wait:
            return try? await connecting?.value
        case .connect(let generation):
            let task = Task { try await self.connect(generation, headers: definition.headers) }
            connecting = task
            do {
                let session = try await task.value
                connecting = nil
                guard supervisor.connected(generation, session: session) else {
                    await session.client.disconnect()
                    return nil
                }
                return session
            } catch {
                connecting = nil
                supervisor.failed(generation, at: .now)
                logger.warning("MCP server \(name) is unavailable: \(error)")
                return nil
            }
        }
    }

    /// Connects, initialises and lists the tools (every page). `generation` is `nil` for a call's own session.
    private func connect(_ generation: Int?, headers: [String: String]) async throws -> Session {
        let client = Client(name: "tether", version: "1")
        // The SDK's client fails its pending requests only when it is disconnected: do that as soon as the
        // transport closes (in the middle of initialize too), then tell the supervisor.
        let onClose: @Sendable () -> Void = { [weak self] in
            Task {
                await client.disconnect()
                if let generation { await self?.ended(generation) }
            }
        }
        let transport: any Transport
        switch definition.transport {
        case .stdio(let command):
            transport = MCPStdioTransport(command: command, logger: logger, onClose: onClose)
        case .http(let url):
            transport = MCPHTTPTransport(
                url: url, headers: headers.sorted { $0.key < $1.key }, timeout: timeout, client: httpClient,
                logger: logger, onClose: onClose)
        }
        if let generation {
            // The client's loop waits for this handler before it reads on: list again in a task of its own (the
            // answer comes through that loop), and have the next use wait for the new list.
            await client.onNotification(ToolListChangedNotification.self) { [weak self] _ in
                await self?.toolsChanged(generation)
            }
        }
        do {
            // The SDK's waits ignore cancellation: a server that does not answer is disconnected, which ends them.
            let outcome = try await Self.bounded(
                max(timeout, Self.connectTimeout), unblock: { await client.disconnect() },
                run: {
                    try await client.connect(transport: transport)
                    return try await self.listTools(client)
                })
            guard case .value(let tools) = outcome else {
                throw MCPTransportClosed(reason: "it did not answer initialize and tools/list in time")
            }
            return Session(client: client, tools: tools)
        } catch {
            await client.disconnect()
            throw error
        }
    }

    private func listTools(_ client: Client) async throws -> [Tool] {
        var tools: [Tool] = []
        var cursor: String?
        repeat {
            let page = try await client.listTools(cursor: cursor)
            tools += page.tools
            cursor = page.nextCursor
        } while cursor != nil && tools.count < 10_000
        return tools
    }

    /// A listing under way after `notifications/tools/list_changed`: the next use waits for it.
    private var relisting: Task<Void, Never>?

    private func toolsChanged(_ generation: Int) {
        let previous = relisting
        relisting = Task {
            await previous?.value
            await self.refresh(generation)
        }
    }

    /// The server said its tools changed: list them again.
    private func refresh(_ generation: Int) async {
        guard case .ready(generation, var session) = supervisor.state else { return }
        guard let tools = try? await listTools(session.client) else { return }
        session.tools = tools
        supervisor.update(generation, session: session)
        logger.info("MCP server \(name) changed its tools: \(tools.map(\.name).sorted().joined(separator: ", "))")
    }

    /// The connection `generation` ended: close it; the next use connects again.
    private func ended(_ generation: Int) async {
        guard let session = supervisor.ended(generation) else { return }
        logger.warning("MCP server \(name) closed its connection; it is started again at the next use")
        await session.client.disconnect()
    }

    /// Stops the server (its process, its session); nothing connects after.
    public func shutDown() async {
        if let session = supervisor.shutDown() { await session.client.disconnect() }
    }

    /// The least time connecting (a process starting, initialize, tools/list) may take, whatever a call's limit.
    static let connectTimeout: Duration = .seconds(30)

    /// One call's time limit.
    nonisolated var timeout: Duration { .milliseconds(Int64(definition.timeoutSeconds * 1000)) }

    /// Calls the server's tool `tool` (its own name) and maps the result.
    func call(_ tool: String, arguments: JSON, context: ToolContext) async -> ToolOutcome {
        let label = prefix + tool
        var extra: [String: String] = [:]
        if case .http = definition.transport {
            for (header, value) in context.forwardedHeaders
            where !definition.headers.keys.contains(where: { $0.lowercased() == header.lowercased() }) {
                extra[header] = value
            }
        }
        let own: Session?
        let client: Client
        if extra.isEmpty {
            guard let session = await session() else {
                return .failure("\(label) is unavailable: its MCP server cannot be reached.")
            }
            own = nil
            client = session.client
        } else {
            do {
                let session = try await connect(
                    nil, headers: definition.headers.merging(extra) { configured, _ in configured })
                own = session
                client = session.client
            } catch {
                return .failure("\(label) is unavailable: its MCP server cannot be reached.")
            }
        }
        defer { if let own { Task { await own.client.disconnect() } } }
        let limit = min(timeout, max(.zero, context.deadline - .now))
        do {
            let request = CallTool.request(.init(name: tool, arguments: Self.values(arguments)))
            let pending = try await client.send(request)
            let outcome = try await Self.bounded(
                limit, unblock: { try? await client.cancelRequest(pending.requestID, reason: "timed out") },
                run: { try await pending.value })
            guard case .value(let result) = outcome else {
                return .failure("\(label) did not answer within \(HTTPTool.seconds(limit)) s.")
            }
            return Self.outcome(result)
        } catch {
            if Task.isCancelled { return .failure("\(label) was interrupted.") }
            logger.warning("MCP call \(label) (\(context.toolCallID)) failed: \(error)")
            if let mcp = error as? MCPError, case .internalError(let message) = mcp, message != "Client disconnected" {
                return .failure("\(label) failed: \(message ?? "internal error")")
            }
            return .failure(
                "\(label) failed: its MCP server stopped during the call (it is started again for the next one).")
        }
    }

    /// What ``bounded(_:unblock:isolation:run:)`` came to.
    enum Bounded<T: Sendable>: Sendable {
        case value(T)
        case expired
    }

    /// Runs `body`; when it is still running after `limit`, or the task is cancelled, calls `unblock`, which must
    /// make `body` return: the SDK's waits (`RequestContext.value`) ignore cancellation, so a task group alone would
    /// wait for them. `.expired` when the limit passed first; a cancellation is thrown.
    static func bounded<T: Sendable>(
        _ limit: Duration, unblock: @escaping @Sendable () async -> Void,
        isolation: isolated (any Actor)? = #isolation, run body: () async throws -> T
    ) async throws -> Bounded<T> {
        let expired = Mutex(false)
        let timer = Task {
            try? await Task.sleep(for: limit)
            if Task.isCancelled { return }
            expired.withLock { $0 = true }
            await unblock()
        }
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            do {
                return .value(try await body())
            } catch {
                if expired.withLock({ $0 }) { return .expired }
                throw error
            }
        } onCancel: {
            Task { await unblock() }
        }
    }

    /// A `tools/call` result as a tool outcome: `isError` is a failure (its text the message); otherwise the
    /// structured content when there is one, else the text (one text part as a string, several as a list, other
    /// parts described by type).
    static func outcome(_ result: CallTool.Result) -> ToolOutcome {
        let parts = result.content.map(part)
        let text = parts.compactMap(\.stringValue).joined(separator: "\n")
        if result.isError == true { return .failure(text.isEmpty ? "the tool failed" : text) }
        if let structured = result.structuredContent { return .output(json(structured)) }
        if parts.count == 1 { return .output(parts[0]) }
        return .output(.array(parts))
    }

    private static func part(_ content: Tool.Content) -> JSON {
        switch content {
        case .text(let text, _, _): return .string(text)
        case .image(_, let mimeType, _, _): return ["type": "image", "mimeType": .string(mimeType)]
        case .audio(_, let mimeType, _, _): return ["type": "audio", "mimeType": .string(mimeType)]
        case .resource(let resource, _, _):
            return [
                "type": "resource", "uri": .string(resource.uri), "text": resource.text.map { .string($0) } ?? .null,
            ]
        case .resourceLink(let uri, let name, _, _, _, _):
            return ["type": "resource_link", "uri": .string(uri), "name": .string(name)]
        }
    }

    /// An MCP value as JSON.
    static func json(_ value: Value) -> JSON {
        switch value {
        case .null: return .null
        case .bool(let bool): return .bool(bool)
        case .int(let int): return .number(Double(int))
        case .double(let double): return .number(double)
        case .string(let string): return .string(string)
        case .data(let mimeType, let data):
            return [
                "type": "data", "mimeType": mimeType.map { .string($0) } ?? .null,
                "base64": .string(data.base64EncodedString()),
            ]
        case .array(let elements): return .array(elements.map(json))
        case .object(let members): return .object(members.mapValues(json))
        }
    }

    /// JSON arguments as MCP values (whole numbers as integers).
    static func values(_ json: JSON) -> [String: Value] {
        guard case .object(let members) = json else { return [:] }
        return members.mapValues(value)
    }

    private static func value(_ json: JSON) -> Value {
        switch json {
        case .null: return .null
        case .bool(let bool): return .bool(bool)
        case .number(let number):
            if number == number.rounded(), abs(number) < 9e15 { return .int(Int(number)) }
            return .double(number)
        case .string(let string): return .string(string)
        case .array(let elements): return .array(elements.map(value))
        case .object(let members): return .object(members.mapValues(value))
        }
    }
}

/// One tool of an MCP server, as the agent sees it: named with the server's prefix, its approval decided by the
/// server's policy on its own name.
struct MCPTool: AgentTool {
    let server: MCPToolServer
    let tool: Tool
    let descriptor: ToolDescriptor

    init(server: MCPToolServer, tool: Tool) {
        self.server = server
        self.tool = tool
        var schema = MCPToolServer.json(tool.inputSchema)
        if case .object = schema {} else { schema = ["type": "object"] }
        self.descriptor = ToolDescriptor(
            name: server.prefix + tool.name, description: tool.description ?? tool.title ?? "",
            inputSchema: schema, needsApproval: server.definition.needsApproval.needsApproval(tool.name))
    }

    var timeout: Duration { server.timeout }

    func run(_ input: JSON, context: ToolContext) async -> ToolOutcome {
        await server.call(tool.name, arguments: input, context: context)
    }
}
