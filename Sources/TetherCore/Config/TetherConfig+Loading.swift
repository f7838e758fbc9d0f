import Foundation
import Yams

/// One problem of a configuration: where it is (the file and line, or the environment variable), which field, and
/// what is wrong.
public struct ConfigProblem: Sendable, Equatable, CustomStringConvertible {
    /// `config/tether.yaml:12`, or `environment variable TETHER_PORT`.
    public var source: String
    /// The field's path: `http.heartbeatSeconds`, `apiKeys[0].tenant`.
    public var field: String
    /// What is wrong with it.
    public var problem: String

    /// Makes a problem.
    public init(source: String, field: String, problem: String) {
        self.source = source
        self.field = field
        self.problem = problem
    }

    /// `config/tether.yaml:12: http.heartbeatSeconds: must be a number from 0.05 to 3600, got 0`.
    public var description: String { "\(source): \(field): \(problem)" }
}

/// Every problem found while loading a configuration: a server with any of them does not start.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The problems, in file order, then the environment's.
    public var problems: [ConfigProblem]

    /// An error of these problems.
    public init(problems: [ConfigProblem]) { self.problems = problems }

    /// One line per problem.
    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

extension TetherConfig {
    /// Reads `file` (when given; missing sections and fields keep their defaults), then the environment
    /// overrides, checking every value against ``settings``. Throws every problem found, not only the first.
    /// `toolNames`, when given, are the tools agents may name.
    public static func load(
        file: String?, environment: [String: String] = ProcessInfo.processInfo.environment,
        toolNames: Set<String>? = nil
    ) throws(ConfigError) -> TetherConfig {
        var config = TetherConfig()
        var problems: [ConfigProblem] = []
        if let file {
            do {
                let text = try String(contentsOfFile: file, encoding: .utf8)
                problems += config.read(
                    yaml: text, file: file, context: ConfigContext(environment: environment, toolNames: toolNames))
            } catch {
                problems.append(ConfigProblem(source: file, field: "-", problem: "cannot be read: \(error)"))
            }
        }
        problems += config.read(environment: environment)
        guard problems.isEmpty else { throw ConfigError(problems: problems) }
        return config
    }

    /// Parses YAML text (missing sections and fields keep their defaults); `file` names it in errors.
    public static func parse(yaml: String, file: String = "configuration", context: ConfigContext = ConfigContext())
        throws(ConfigError) -> TetherConfig
    {
        var config = TetherConfig()
        let problems = config.read(yaml: yaml, file: file, context: context)
        guard problems.isEmpty else { throw ConfigError(problems: problems) }
        return config
    }

    /// Applies the environment overrides of ``settings`` (empty variables are ignored).
    public mutating func applyEnvironment(_ environment: [String: String]) throws(ConfigError) {
        let problems = read(environment: environment)
        guard problems.isEmpty else { throw ConfigError(problems: problems) }
    }

    // MARK: - Reading

    private mutating func read(environment: [String: String]) -> [ConfigProblem] {
        var problems: [ConfigProblem] = []
        for setting in Self.settings {
            guard let name = setting.environment, let value = environment[name], !value.isEmpty else { continue }
            let values = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if let problem = assign(setting, scalar: value, list: values) {
                problems.append(
                    ConfigProblem(source: "environment variable \(name)", field: setting.path, problem: problem))
            }
        }
        return problems
    }

    private mutating func read(yaml: String, file: String, context: ConfigContext) -> [ConfigProblem] {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            return [ConfigProblem(source: file, field: "-", problem: "is not valid YAML: \(error)")]
        }
        guard let root, !ConfigReader.isNull(root) else { return [] }
        func at(_ node: Node) -> String { node.mark.map { "\(file):\($0.line)" } ?? file }
        guard let mapping = root.mapping else {
            return [ConfigProblem(source: at(root), field: "-", problem: "the file must be a mapping of sections")]
        }
        var problems: [ConfigProblem] = []
        let settings = Dictionary(Self.settings.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
        // The tools first, wherever they are in the file: the agents name them.
        var context = context
        for (keyNode, value) in mapping where keyNode.string == "tools" {
            problems += readTools(value, file: file, context: &context)
        }
        for (keyNode, value) in mapping {
            let section = keyNode.string ?? ""
            if section == "tools" { continue }
            if section == "apiKeys" {
                problems += readAPIKeys(value, file: file)
                continue
            }
            if section == "agents" {
                problems += readAgents(value, file: file, context: context)
                continue
            }
            guard Self.sections.contains(section) else {
                problems.append(
                    ConfigProblem(
                        source: at(keyNode), field: section,
                        problem: "unknown section; expected one of \(Self.sections.joined(separator: ", "))"))
                continue
            }
            if ConfigReader.isNull(value) { continue }
            guard let fields = value.mapping else {
                problems.append(
                    ConfigProblem(source: at(value), field: section, problem: "must be a mapping of fields"))
                continue
            }
            for (fieldNode, fieldValue) in fields {
                let path = section + "." + (fieldNode.string ?? "")
                guard let setting = settings[path] else {
                    let known = Self.settings.filter { $0.path.hasPrefix(section + ".") }
                        .map { String($0.path.dropFirst(section.count + 1)) }
                    problems.append(
                        ConfigProblem(
                            source: at(fieldNode), field: path,
                            problem: "unknown field; \(section) has \(known.joined(separator: ", "))"))
                    continue
                }
                let list = fieldValue.sequence.map { $0.compactMap { $0.scalar?.string } }
                let scalar = fieldValue.scalar.flatMap { ConfigReader.isNull(fieldValue) ? nil : $0.string }
                if let problem = assign(setting, scalar: scalar, list: list) {
                    problems.append(ConfigProblem(source: at(fieldValue), field: path, problem: problem))
                }
            }
        }
        return problems
    }

    /// Sets one setting from a scalar (or a list); returns the problem when the value is not valid.
    private mutating func assign(_ setting: Setting, scalar: String?, list: [String]?) -> String? {
        switch setting.kind {
        case .integer(let path, let range):
            guard let scalar else { return "must be \(setting.rangeDescription)" }
            guard let value = Int(scalar), range.contains(value) else {
                return "must be \(setting.rangeDescription), got \(JSON.quoted(scalar))"
            }
            self[keyPath: path] = value
        case .number(let path, let range):
            guard let scalar else { return "must be \(setting.rangeDescription)" }
            guard let value = Double(scalar), range.contains(value) else {
                return "must be \(setting.rangeDescription), got \(JSON.quoted(scalar))"
            }
            self[keyPath: path] = value
        case .text(let path, let check):
            guard let scalar else { return "must be text" }
            if let problem = check(scalar) { return problem }
            self[keyPath: path] = scalar
        case .texts(let path, let check):
            guard let values = list ?? scalar.map({ [$0] }) else { return "must be a list" }
            for value in values {
                if let problem = check(value) { return problem }
            }
            self[keyPath: path] = values
        }
        return nil
    }

    private mutating func readAPIKeys(_ node: Node, file: String) -> [ConfigProblem] {
        var problems: [ConfigProblem] = []
        guard
            let entries = ConfigReader.sequence(
                node, path: "apiKeys", file: file, expected: "a list of keys", problems: &problems)
        else { return problems }
        var keys: [APIKey] = []
        for (index, entry) in entries.enumerated() {
            guard
                var reader = ConfigReader(
                    entry, path: "apiKeys[\(index)]", file: file,
                    expected: "a mapping of id, tenant, agent, secretSha256", problems: &problems)
            else { continue }
            reader.refuseUnknown(["id", "tenant", "agent", "secretSha256"], what: "a key")
            let id = reader.text("id", required: true) { id in
                if keys.contains(where: { $0.id == id }) { return "\(JSON.quoted(id)) is declared twice" }
                return APIKeys.isValidKeyID(id) ? nil : "must be 1-64 characters of A-Z a-z 0-9, got \(JSON.quoted(id))"
            }
            let tenant = reader.text("tenant", required: true, check: Names.problem)
            let agent = reader.text("agent", required: true, check: Names.problem)
            let digest = reader.text("secretSha256", required: true) { digest in
                digest.utf8.count == 64 && digest.utf8.allSatisfy({ $0.isHexDigit })
                    ? nil : "must be 64 hex digits (the SHA-256 of the key's secret part)"
            }
            problems += reader.problems
            if let id, let tenant, let agent, let digest {
                keys.append(APIKey(id: id, tenant: tenant, agent: agent, secretSha256: digest.lowercased()))
            }
        }
        apiKeys = keys
        return problems
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9"))
            || (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "f"))
            || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "F"))
    }
}
