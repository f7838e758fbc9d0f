import Yams

/// Why a value of the configuration is not valid (a message for ``ConfigProblem/problem``).
struct ConfigValueProblem: Error {
    let message: String
}

/// Reads one YAML mapping of the configuration field by field, and collects each problem with its file, line and
/// field path: the list sections (`apiKeys`, `agents`) are read with it.
struct ConfigReader {
    /// The mapping's path: `agents[0].model`.
    let path: String
    let file: String
    private let node: Node
    private let fields: [String: (key: Node, value: Node)]
    /// The problems found so far, this mapping's and its nested ones'.
    private(set) var problems: [ConfigProblem] = []

    /// A reader of `node`, or `nil` (with the problem recorded in `problems`) when it is not a mapping.
    init?(_ node: Node, path: String, file: String, expected: String, problems: inout [ConfigProblem]) {
        guard let mapping = node.mapping else {
            problems.append(ConfigProblem(source: Self.at(node, file), field: path, problem: "must be \(expected)"))
            return nil
        }
        self.node = node
        self.path = path
        self.file = file
        var fields: [String: (key: Node, value: Node)] = [:]
        for (key, value) in mapping { fields[key.string ?? ""] = (key, value) }
        self.fields = fields
    }

    static func at(_ node: Node, _ file: String) -> String { node.mark.map { "\(file):\($0.line)" } ?? file }

    static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node else { return false }
        return scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// The elements of a list, or `nil` (with a problem) when `node` is not one; a null node is an empty list.
    static func sequence(
        _ node: Node, path: String, file: String, expected: String, problems: inout [ConfigProblem]
    ) -> [Node]? {
        if isNull(node) { return [] }
        guard let sequence = node.sequence else {
            problems.append(ConfigProblem(source: at(node, file), field: path, problem: "must be \(expected)"))
            return nil
        }
        return Array(sequence)
    }

    /// Whether the field is there (and not null).
    func has(_ name: String) -> Bool { fields[name].map { !Self.isNull($0.value) } ?? false }

    /// Records a problem of one field (or of the mapping itself, for an empty name).
    mutating func problem(_ name: String, _ message: String) {
        let node = fields[name]?.value ?? self.node
        problems.append(
            ConfigProblem(
                source: Self.at(node, file), field: name.isEmpty ? path : "\(path).\(name)", problem: message))
    }

    /// Refuses the fields that are not in `known`.
    mutating func refuseUnknown(_ known: [String], what: String) {
        for (name, field) in fields.sorted(by: { $0.key < $1.key }) where !known.contains(name) {
            problems.append(
                ConfigProblem(
                    source: Self.at(field.key, file), field: "\(path).\(name)",
                    problem: "unknown field; \(what) has \(known.joined(separator: ", "))"))
        }
    }

    private mutating func scalar(_ name: String, required: Bool, expected: String) -> String? {
        guard let field = fields[name], !Self.isNull(field.value) else {
            if required { problem(name, "is required") }
            return nil
        }
        guard let scalar = field.value.scalar else {
            problem(name, "must be \(expected)")
            return nil
        }
        return scalar.string
    }

    /// A text field; `check` returns the problem of a bad value.
    mutating func text(_ name: String, required: Bool = false, check: (String) -> String? = { _ in nil }) -> String? {
        guard let value = scalar(name, required: required, expected: "text") else { return nil }
        if let message = check(value) {
            problem(name, message)
            return nil
        }
        return value
    }

    /// A whole number within `range`.
    mutating func integer(_ name: String, _ range: ClosedRange<Int>, required: Bool = false) -> Int? {
        ranged(name, range, Self.describe(range), required: required) { Int($0) }
    }

    /// A number within `range`.
    mutating func number(_ name: String, _ range: ClosedRange<Double>, required: Bool = false) -> Double? {
        ranged(name, range, Self.describe(range), required: required) { Double($0) }
    }

    private mutating func ranged<T: Comparable>(
        _ name: String, _ range: ClosedRange<T>, _ expected: String, required: Bool, parse: (String) -> T?
    ) -> T? {
        guard let text = scalar(name, required: required, expected: expected) else { return nil }
        guard let value = parse(text), range.contains(value) else {
            problem(name, "must be \(expected), got \(JSON.quoted(text))")
            return nil
        }
        return value
    }

    /// `true` or `false`.
    mutating func boolean(_ name: String) -> Bool? {
        guard let field = fields[name], !Self.isNull(field.value) else { return nil }
        guard field.value.scalar?.style == .plain, let value = field.value.bool else {
            problem(name, "must be true or false")
            return nil
        }
        return value
    }

    /// A list of texts, each checked.
    mutating func texts(_ name: String, check: (String) -> String? = { _ in nil }) -> [String]? {
        guard let field = fields[name], !Self.isNull(field.value) else { return nil }
        guard let sequence = field.value.sequence else {
            problem(name, "must be a list")
            return nil
        }
        var values: [String] = []
        for (index, element) in sequence.enumerated() {
            guard let text = element.scalar?.string else {
                problems.append(
                    ConfigProblem(
                        source: Self.at(element, file), field: "\(path).\(name)[\(index)]", problem: "must be text"))
                continue
            }
            if let message = check(text) {
                problems.append(
                    ConfigProblem(source: Self.at(element, file), field: "\(path).\(name)[\(index)]", problem: message))
                continue
            }
            values.append(text)
        }
        return values
    }

    /// A mapping of texts to texts, names and values each checked.
    mutating func textMap(
        _ name: String, checkName: (String) -> String? = { _ in nil }, checkValue: (String) -> String? = { _ in nil }
    ) -> [String: String]? {
        guard let field = fields[name], !Self.isNull(field.value) else { return nil }
        guard let mapping = field.value.mapping else {
            problem(name, "must be a mapping of names to texts")
            return nil
        }
        var values: [String: String] = [:]
        for (key, value) in mapping {
            let entry = key.string ?? ""
            let place = Self.at(key, file)
            if let message = checkName(entry) {
                problems.append(ConfigProblem(source: place, field: "\(path).\(name).\(entry)", problem: message))
                continue
            }
            guard let text = value.scalar?.string else {
                problems.append(
                    ConfigProblem(source: place, field: "\(path).\(name).\(entry)", problem: "must be text"))
                continue
            }
            if let message = checkValue(text) {
                problems.append(ConfigProblem(source: place, field: "\(path).\(name).\(entry)", problem: message))
                continue
            }
            values[entry] = text
        }
        return values
    }

    /// A nested mapping, read by `read`; its problems join this reader's.
    mutating func nested<T>(
        _ name: String, expected: String, required: Bool = false, _ read: (inout ConfigReader) -> T?
    )
        -> T?
    {
        guard let field = fields[name], !Self.isNull(field.value) else {
            if required { problem(name, "is required") }
            return nil
        }
        guard
            var reader = ConfigReader(
                field.value, path: "\(path).\(name)", file: file, expected: expected, problems: &problems)
        else { return nil }
        let value = read(&reader)
        problems += reader.problems
        return value
    }

    /// The field's value as JSON (a JSON Schema, say): plain scalars resolve as YAML does (null, booleans,
    /// numbers), quoted ones stay text.
    mutating func json(_ name: String, expected: String) -> JSON? {
        guard let field = fields[name], !Self.isNull(field.value) else { return nil }
        guard let value = Self.json(field.value) else {
            problem(name, "must be \(expected)")
            return nil
        }
        return value
    }

    /// A YAML node as JSON; `nil` for what JSON cannot hold (aliases to nothing, non-text keys).
    static func json(_ node: Node) -> JSON? {
        switch node {
        case .scalar(let scalar):
            if scalar.style != .plain { return .string(scalar.string) }
            if isNull(node) { return .null }
            if let bool = node.bool { return .bool(bool) }
            if let int = node.int { return .number(Double(int)) }
            if let float = node.float, float.isFinite { return .number(float) }
            return .string(scalar.string)
        case .sequence(let sequence):
            var elements: [JSON] = []
            for element in sequence {
                guard let value = json(element) else { return nil }
                elements.append(value)
            }
            return .array(elements)
        case .mapping(let mapping):
            var members: [String: JSON] = [:]
            for (key, value) in mapping {
                guard let name = key.string, let member = json(value) else { return nil }
                members[name] = member
            }
            return .object(members)
        case .alias:
            return nil
        }
    }

    /// The field's node as it is, for a value of several shapes (`needsApproval: true` or a list of patterns).
    func node(_ name: String) -> Node? {
        guard let field = fields[name], !Self.isNull(field.value) else { return nil }
        return field.value
    }

    /// `text` with each `${NAME}` replaced by that environment variable; the problem when one is not set (or the
    /// reference is not closed). Without an environment (a check of the file alone) the text stays as it is.
    static func expand(_ text: String, environment: [String: String]?) -> Result<String, ConfigValueProblem> {
        guard let environment, text.contains("${") else { return .success(text) }
        var result = ""
        var rest = Substring(text)
        while let open = rest.range(of: "${") {
            result += rest[..<open.lowerBound]
            guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                return .failure(ConfigValueProblem(message: "has a ${ without its closing }"))
            }
            let name = String(rest[open.upperBound..<close])
            guard let value = environment[name], !value.isEmpty else {
                return .failure(
                    ConfigValueProblem(message: "names ${\(name)}, which is not set in the environment"))
            }
            result += value
            rest = rest[rest.index(after: close)...]
        }
        return .success(result + rest)
    }

    static func describe(_ range: ClosedRange<Int>) -> String {
        "a whole number from \(range.lowerBound) to \(range.upperBound)"
    }

    static func describe(_ range: ClosedRange<Double>) -> String {
        func format(_ value: Double) -> String {
            value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
        }
        return "a number from \(format(range.lowerBound)) to \(format(range.upperBound))"
    }
}
