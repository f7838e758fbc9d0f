/// A Lua script run with `EVALSHA`, loaded into Redis on first use (or again after `SCRIPT FLUSH` or a restart).
public struct RedisScript: Sendable, Hashable {
    /// The Lua source.
    public let source: String
    /// The SHA-1 of the source, in lower-case hex, as Redis names scripts.
    public let sha1: String

    /// Makes a script from its Lua source.
    public init(_ source: String) {
        self.source = source
        self.sha1 = Digest.sha1Hex(Array(source.utf8))
    }
}
