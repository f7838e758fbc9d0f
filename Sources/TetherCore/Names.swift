/// The rules for the names that become parts of Redis keys and that operators type: tenants, agents, key prefixes.
///
/// A tenant or agent name is 1–64 characters of `A–Z a–z 0–9 . _ -`, starting with a letter or a digit. It has no
/// `:`, so it can never run into the next part of a key (`tenant a:b, agent c` and `tenant a, agent b:c` once
/// shared an idempotency key), and no `{` or `}`, so it cannot move a key's Redis Cluster hash tag.
public enum Names {
    /// Most characters of a tenant or agent name.
    public static let maxLength = 64

    /// Why `name` is not a valid tenant or agent name, or `nil` when it is.
    public static func problem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        guard let first = bytes.first else { return "must not be empty" }
        guard bytes.count <= maxLength else { return "must be at most \(maxLength) characters, got \(bytes.count)" }
        guard isAlphanumeric(first) else { return "must start with a letter or a digit, got \(JSON.quoted(name))" }
        guard
            bytes.allSatisfy({
                isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
            })
        else { return "must be characters of A-Z a-z 0-9 . _ - only, got \(JSON.quoted(name))" }
        return nil
    }

    /// Why `prefix` is not a valid key prefix, or `nil`: 1–64 characters of `A–Z a–z 0–9 . _ : -` (no hash-tag
    /// braces, no spaces).
    public static func prefixProblem(_ prefix: String) -> String? {
        let bytes = Array(prefix.utf8)
        guard !bytes.isEmpty else { return "must not be empty" }
        guard bytes.count <= maxLength else { return "must be at most \(maxLength) characters, got \(bytes.count)" }
        let allowed = bytes.allSatisfy {
            isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ":")
                || $0 == UInt8(ascii: "-")
        }
        return allowed ? nil : "must be characters of A-Z a-z 0-9 . _ : - only, got \(JSON.quoted(prefix))"
    }

    static func isAlphanumeric(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
            || (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z"))
    }
}
