import Foundation

/// A JSON value: what request bodies, event payloads and tool inputs are made of.
///
/// Objects encode with sorted keys, so the same value always renders to the same bytes (replays are
/// byte-identical to live delivery).
public enum JSON: Sendable, Hashable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number.
    case number(Double)
    /// A string.
    case string(String)
    /// An array.
    case array([JSON])
    /// An object.
    case object([String: JSON])

    /// Parses JSON text; throws `JSONError` with a short reason when it is not valid JSON.
    public static func parse(_ bytes: some Collection<UInt8>) throws(JSONError) -> JSON {
        var parser = JSONParser(Array(bytes))
        return try parser.parseDocument()
    }

    /// Parses JSON text.
    public static func parse(_ text: String) throws(JSONError) -> JSON { try parse(Array(text.utf8)) }

    /// The compact JSON text of this value (sorted keys).
    public var rendered: String {
        var out = ""
        render(into: &out)
        return out
    }

    /// Appends the compact JSON text of this value.
    public func render(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n):
            if n.rounded() == n, abs(n) < 1e15 {
                out += String(Int64(n))
            } else if n.isFinite {
                out += "\(n)"
            } else {
                out += "null"
            }
        case .string(let s): JSON.appendQuoted(s, to: &out)
        case .array(let a):
            out += "["
            for (i, element) in a.enumerated() {
                if i > 0 { out += "," }
                element.render(into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, key) in o.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                JSON.appendQuoted(key, to: &out)
                out += ":"
                o[key]!.render(into: &out)
            }
            out += "}"
        }
    }

    /// Appends `s` as a JSON string literal, quotes included.
    public static func appendQuoted(_ s: String, to out: inout String) {
        out += "\""
        // Fast path: nothing to escape (the common case for tokens), one append.
        if !s.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C || $0 == 0xE2 }) {
            out += s
            out += "\""
            return
        }
        var plainStart = s.unicodeScalars.startIndex
        var index = plainStart
        let scalars = s.unicodeScalars
        while index < scalars.endIndex {
            let c = scalars[index]
            let escape: String?
            switch c {
            case "\"": escape = "\\\""
            case "\\": escape = "\\\\"
            case "\n": escape = "\\n"
            case "\r": escape = "\\r"
            case "\t": escape = "\\t"
            case "\u{2028}": escape = "\\u2028"
            case "\u{2029}": escape = "\\u2029"
            default:
                if c.value < 0x20 {
                    let hex = String(c.value, radix: 16)
                    escape = "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    escape = nil
                }
            }
            if let escape {
                out.unicodeScalars.append(contentsOf: scalars[plainStart..<index])
                out += escape
                plainStart = scalars.index(after: index)
            }
            index = scalars.index(after: index)
        }
        out.unicodeScalars.append(contentsOf: scalars[plainStart..<scalars.endIndex])
        out += "\""
    }

    /// The raw JSON text of member `key` of the top-level object in `text`, without decoding it; `nil` when absent
    /// or when `text` is not an object. Lets the hot paths copy a value (a string literal, say) as it is stored.
    public static func rawMember(_ key: String, in text: String) -> Substring? {
        let utf8 = text.utf8
        var i = utf8.startIndex
        func skipSpace() {
            while i < utf8.endIndex, utf8[i] == 0x20 || utf8[i] == 0x0A || utf8[i] == 0x0D || utf8[i] == 0x09 {
                i = utf8.index(after: i)
            }
        }
        /// Moves past one value; returns false on malformed input.
        func skipValue() -> Bool {
            guard i < utf8.endIndex else { return false }
            var depth = 0
            var inString = false
            repeat {
                let b = utf8[i]
                if inString {
                    if b == 0x5C {
                        i = utf8.index(after: i)
                        guard i < utf8.endIndex else { return false }
                    } else if b == 0x22 {
                        inString = false
                        if depth == 0 {
                            i = utf8.index(after: i)
                            return true
                        }
                    }
                } else {
                    switch b {
                    case 0x22: inString = true
                    case 0x7B, 0x5B: depth += 1
                    case 0x7D, 0x5D:
                        // At depth 0 this closes the enclosing object: the primitive value ended just before it.
                        if depth == 0 { return true }
                        depth -= 1
                        if depth == 0 {
                            i = utf8.index(after: i)
                            return true
                        }
                    case 0x2C, 0x20, 0x0A, 0x0D, 0x09:
                        if depth == 0 { return true }
                    default: break
                    }
                }
                i = utf8.index(after: i)
            } while i < utf8.endIndex
            return depth == 0 && !inString
        }
        skipSpace()
        guard i < utf8.endIndex, utf8[i] == 0x7B else { return nil }
        i = utf8.index(after: i)
        let quotedKey = quoted(key)
        while true {
            skipSpace()
            guard i < utf8.endIndex, utf8[i] == 0x22 else { return nil }
            let keyStart = i
            guard skipValue() else { return nil }
            let keyText = text[keyStart..<i]
            skipSpace()
            guard i < utf8.endIndex, utf8[i] == 0x3A else { return nil }
            i = utf8.index(after: i)
            skipSpace()
            let valueStart = i
            guard skipValue() else { return nil }
            if keyText == quotedKey { return text[valueStart..<i] }
            skipSpace()
            guard i < utf8.endIndex, utf8[i] == 0x2C else { return nil }
            i = utf8.index(after: i)
        }
    }

    /// `s` as a JSON string literal.
    public static func quoted(_ s: String) -> String {
        var out = ""
        appendQuoted(s, to: &out)
        return out
    }

    /// The member `key` of an object, else `nil`.
    public subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// The string, else `nil`.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The bool, else `nil`.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    /// The number, else `nil`.
    public var numberValue: Double? {
        if case .number(let n) = self { return n }
        return nil
    }

    /// The elements, else `nil`.
    public var arrayValue: [JSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The members, else `nil`.
    public var objectValue: [String: JSON]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// The JSON type's name, for error messages.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

/// Invalid JSON text.
public struct JSONError: Error, Sendable, CustomStringConvertible {
    /// Why the text is not valid JSON.
    public var reason: String
    /// The reason.
    public var description: String { reason }
}

extension JSON: Codable {
    /// Decodes any JSON value.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let b = try? container.decode(Bool.self) {
            self = .bool(b)
        } else if let n = try? container.decode(Double.self) {
            self = .number(n)
        } else if let s = try? container.decode(String.self) {
            self = .string(s)
        } else if let a = try? container.decode([JSON].self) {
            self = .array(a)
        } else {
            self = .object(try container.decode([String: JSON].self))
        }
    }

    /// Encodes the value.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .number(let n): try container.encode(n)
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByDictionaryLiteral, ExpressibleByArrayLiteral, ExpressibleByNilLiteral
{
    /// A number.
    public init(floatLiteral value: Double) { self = .number(value) }
    /// A string.
    public init(stringLiteral value: String) { self = .string(value) }
    /// A bool.
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    /// A number.
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    /// An object.
    public init(dictionaryLiteral elements: (String, JSON)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    /// An array.
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    /// `null`.
    public init(nilLiteral: ()) { self = .null }
}
