/// Checks a JSON value against the parts of JSON Schema that tool inputs use: `type` (one or a list), `properties`,
/// `required`, `additionalProperties: false`, `items`, `enum`, `const`, `minLength`/`maxLength`,
/// `minimum`/`maximum`, `minItems`/`maxItems`. Other keywords are accepted without being checked.
public enum JSONSchema {
    /// The first way `value` breaks `schema`, as a message naming the path (`input.to: must be a string`), or
    /// `nil` when it conforms.
    public static func problem(_ value: JSON, against schema: JSON, at path: String = "input") -> String? {
        guard case .object(let rules) = schema else { return nil }
        if let types = rules["type"] {
            let allowed = types.arrayValue?.compactMap(\.stringValue) ?? types.stringValue.map { [$0] } ?? []
            if !allowed.isEmpty, !allowed.contains(where: { matches(value, type: $0) }) {
                return "\(path): must be \(allowed.joined(separator: " or ")), got \(value.typeName)"
            }
        }
        if let options = rules["enum"]?.arrayValue, !options.contains(value) {
            return "\(path): must be one of \(options.map(\.rendered).joined(separator: ", "))"
        }
        if let constant = rules["const"], constant != value {
            return "\(path): must be \(constant.rendered)"
        }
        switch value {
        case .string(let text):
            let count = text.count
            if let min = rules["minLength"]?.numberValue, Double(count) < min {
                return "\(path): must be at least \(Int(min)) characters"
            }
            if let max = rules["maxLength"]?.numberValue, Double(count) > max {
                return "\(path): must be at most \(Int(max)) characters"
            }
        case .number(let number):
            if let min = rules["minimum"]?.numberValue, number < min { return "\(path): must be at least \(min)" }
            if let max = rules["maximum"]?.numberValue, number > max { return "\(path): must be at most \(max)" }
        case .array(let elements):
            if let min = rules["minItems"]?.numberValue, Double(elements.count) < min {
                return "\(path): must have at least \(Int(min)) items"
            }
            if let max = rules["maxItems"]?.numberValue, Double(elements.count) > max {
                return "\(path): must have at most \(Int(max)) items"
            }
            if let items = rules["items"] {
                for (index, element) in elements.enumerated() {
                    if let problem = problem(element, against: items, at: "\(path)[\(index)]") { return problem }
                }
            }
        case .object(let members):
            for name in rules["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where members[name] == nil {
                return "\(path).\(name): is required"
            }
            let properties = rules["properties"]?.objectValue ?? [:]
            for (name, member) in members.sorted(by: { $0.key < $1.key }) {
                if let rule = properties[name] {
                    if let problem = problem(member, against: rule, at: "\(path).\(name)") { return problem }
                } else if rules["additionalProperties"] == .bool(false) {
                    return "\(path).\(name): is not a known property"
                } else if let extra = rules["additionalProperties"], case .object = extra {
                    if let problem = problem(member, against: extra, at: "\(path).\(name)") { return problem }
                }
            }
        case .null, .bool:
            break
        }
        return nil
    }

    private static func matches(_ value: JSON, type: String) -> Bool {
        switch (type, value) {
        case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool), ("null", .null),
            ("number", .number):
            return true
        case ("integer", .number(let number)):
            return number == number.rounded() && number.isFinite
        default:
            return false
        }
    }
}
