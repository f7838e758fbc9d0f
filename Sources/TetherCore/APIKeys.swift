import COpenSSL
import RedisKit

/// Who a request acts as: the API key's tenant and agent.
public struct Principal: Sendable, Hashable {
    /// The key's public id.
    public var keyId: String
    /// The tenant.
    public var tenant: String
    /// The agent.
    public var agent: String
}

/// An API key's public facts (never its secret).
public struct APIKeyInfo: Sendable, Hashable {
    /// The public id.
    public var id: String
    /// The tenant.
    public var tenant: String
    /// The agent.
    public var agent: String
    /// Hex SHA-256 of the secret.
    public var secretSha256: String
    /// When it was made (ISO-8601), if known.
    public var createdAt: String?
    /// When it was revoked (ISO-8601), if it was.
    public var revokedAt: String?
    /// `config` for keys of the configuration file, `redis` for keys made with `tether keys create`.
    public var source: String
}

/// Why a key could not be made.
public struct APIKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public var message: String
    /// The message.
    public var description: String { message }
}

/// API keys of the form `tk_<id>_<secret>`: the id is public, only the secret's SHA-256 is stored, and the
/// comparison runs in constant time.
///
/// The id of a key made with ``create(tenant:agent:)`` is 12 random characters followed by 10 hex digits of an
/// HMAC-SHA-256 of them under the id secret (kept in Redis, made with the first key): a gateway rejects an id it
/// never issued without asking Redis (``isIssued(_:secret:)``). Keys of the configuration file keep the ids the
/// operator gave them and are checked in memory.
public struct APIKeys: Sendable {
    /// The Redis client.
    public let redis: any RedisClientProtocol
    /// The key schema.
    public let keys: Keys
    /// Keys from the configuration file, by id.
    public let configured: [String: APIKeyInfo]

    /// Makes the key store.
    public init(redis: any RedisClientProtocol, keys: Keys, configured: [TetherConfig.APIKey]) {
        self.redis = redis
        self.keys = keys
        var byID: [String: APIKeyInfo] = [:]
        for key in configured {
            byID[key.id] = APIKeyInfo(
                id: key.id, tenant: key.tenant, agent: key.agent, secretSha256: key.secretSha256.lowercased(),
                createdAt: nil, revokedAt: nil, source: "config")
        }
        self.configured = byID
    }

    /// Splits `tk_<id>_<secret>`; `nil` when the token does not have that shape.
    public static func parse(_ token: String) -> (id: String, secret: String)? {
        let parts = token.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "tk", isKeyPart(parts[1], max: 64), isKeyPart(parts[2], max: 128) else {
            return nil
        }
        return (String(parts[1]), String(parts[2]))
    }

    /// Whether `id` may name a key of the configuration file: 1-64 characters of `A-Z a-z 0-9`.
    public static func isValidKeyID(_ id: String) -> Bool { isKeyPart(Substring(id), max: 64) }

    /// Characters of random in an issued id.
    static let randomIDLength = 12
    /// Hex digits of MAC in an issued id.
    static let macLength = 10

    /// The issued id for a random part: the part and the first hex digits of its HMAC under `secret`.
    public static func issuedID(random: String, secret: [UInt8]) -> String {
        random + mac(random, secret)
    }

    /// Whether `id` carries a valid MAC under `secret`: `false` for any id this deployment did not issue (but for
    /// one chance in 2^40), decided without Redis and in time independent of where the MAC differs.
    public static func isIssued(_ id: String, secret: [UInt8]) -> Bool {
        guard id.utf8.count == randomIDLength + macLength else { return false }
        let random = String(id.prefix(randomIDLength))
        return constantTimeEqual(String(id.dropFirst(randomIDLength)), mac(random, secret))
    }

    private static func mac(_ random: String, _ secret: [UInt8]) -> String {
        String(Digest.hex(Digest.hmacSHA256(key: secret, Array(random.utf8))).prefix(macLength))
    }

    /// The id secret, or `nil` when no key was ever made in this Redis (then no id from Redis can be valid).
    public func idSecret() async throws -> [UInt8]? {
        try await redis.send("GET", keys.apiKeyIDSecret).string.flatMap(Self.bytes(hex:))
    }

    /// The id secret, made (32 random bytes, `SET NX`, so concurrent callers agree) when there is none.
    public func ensureIDSecret() async throws -> [UInt8] {
        if let secret = try await idSecret() { return secret }
        try await redis.send("SET", keys.apiKeyIDSecret, Digest.hex(Identifiers.randomBytes(32)), "NX")
        guard let secret = try await idSecret() else { throw APIKeyError(message: "the id secret could not be stored") }
        return secret
    }

    private static func bytes(hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count >= 32, digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let high = nibble(digits[i]), let low = nibble(digits[i + 1]) else { return nil }
            out.append(high << 4 | low)
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func isKeyPart(_ s: Substring, max: Int) -> Bool {
        !s.isEmpty && s.utf8.count <= max
            && s.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) }
    }

    /// Hex SHA-256 of a secret.
    public static func digest(_ secret: String) -> String { Digest.hex(Digest.sha256(Array(secret.utf8))) }

    /// Whether two equal-length strings are equal, in time independent of where they differ.
    public static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return x.withUnsafeBytes { px in
            y.withUnsafeBytes { py in CRYPTO_memcmp(px.baseAddress, py.baseAddress, x.count) == 0 }
        }
    }

    /// The key with that id: from the configuration file, else from Redis.
    public func lookup(id: String) async throws -> APIKeyInfo? {
        if let key = configured[id] { return key }
        let fields = try await redis.send("HGETALL", keys.apiKey(id)).stringDictionary ?? [:]
        guard let tenant = fields["tenant"], let agent = fields["agent"], let digest = fields["secretSha256"] else {
            return nil
        }
        return APIKeyInfo(
            id: id, tenant: tenant, agent: agent, secretSha256: digest, createdAt: fields["createdAt"],
            revokedAt: fields["revokedAt"], source: "redis")
    }

    /// Checks a token against a looked-up key: the right secret and not revoked.
    public static func verify(secret: String, against key: APIKeyInfo) -> Principal? {
        guard constantTimeEqual(digest(secret), key.secretSha256) else { return nil }
        return principal(of: key)
    }

    /// Who a looked-up key acts as, unless it is revoked (for a credential that stands for the key, such as a
    /// stream token, whose secret was checked when it was made).
    public static func principal(of key: APIKeyInfo) -> Principal? {
        guard key.revokedAt == nil else { return nil }
        return Principal(keyId: key.id, tenant: key.tenant, agent: key.agent)
    }

    /// Makes a key in Redis and returns the whole token (shown once; only its digest is stored). Tenant and agent
    /// must be valid names (``Names``).
    public func create(tenant: String, agent: String) async throws -> (token: String, info: APIKeyInfo) {
        if let problem = Names.problem(tenant) { throw APIKeyError(message: "tenant \(problem)") }
        if let problem = Names.problem(agent) { throw APIKeyError(message: "agent \(problem)") }
        let id = Self.issuedID(random: Identifiers.token(Self.randomIDLength), secret: try await ensureIDSecret())
        let secret = Identifiers.token(32)
        let created = Identifiers.isoTimestamp(milliseconds: Identifiers.nowMilliseconds())
        let info = APIKeyInfo(
            id: id, tenant: tenant, agent: agent, secretSha256: Self.digest(secret), createdAt: created, revokedAt: nil,
            source: "redis")
        let replies = try await redis.send(batch: [
            RedisCommand(
                "HSET", keys.apiKey(id), "tenant", tenant, "agent", agent, "secretSha256", info.secretSha256,
                "createdAt", created),
            RedisCommand("SADD", keys.apiKeyIndex, id),
        ])
        for reply in replies { try reply.throwIfError() }
        return ("tk_\(id)_\(secret)", info)
    }

    /// Every key: those of the configuration file, then those in Redis.
    public func list() async throws -> [APIKeyInfo] {
        var all = configured.values.sorted { $0.id < $1.id }
        let ids = try await redis.send("SMEMBERS", keys.apiKeyIndex).array?.compactMap(\.string) ?? []
        for id in ids.sorted() {
            if let info = try await lookup(id: id), info.source == "redis" { all.append(info) }
        }
        return all
    }

    /// Revokes a key kept in Redis; returns `false` when there is no such key. Keys of the configuration file are
    /// revoked by removing them from the file.
    public func revoke(id: String) async throws -> Bool {
        guard try await redis.send("EXISTS", keys.apiKey(id)).int == 1 else { return false }
        try await redis.send(
            "HSET", keys.apiKey(id), "revokedAt", Identifiers.isoTimestamp(milliseconds: Identifiers.nowMilliseconds()))
        return true
    }
}
