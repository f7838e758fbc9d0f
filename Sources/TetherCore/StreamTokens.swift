import RedisKit

/// Short-lived tokens that let a browser's `EventSource`, which cannot send `Authorization`, read one execution's
/// stream: `st1.<executionId>.<keyId>.<expiresAtMs>.<mac>`, where the MAC is the hex HMAC-SHA-256 of everything
/// before it under a key derived from the deployment's id secret (``APIKeys/ensureIDSecret()``, made once and kept in
/// Redis). A token names the execution and the key that asked for it; it is refused after its expiry, for any other
/// execution, and once that key is revoked (checked when it is used).
public enum StreamTokens {
    /// How long a token is valid after it is made.
    public static let lifetimeMilliseconds: Int64 = 5 * 60 * 1000

    /// Why a token was refused.
    public enum Refusal: Error, Sendable, Equatable {
        case malformed, badSignature, otherExecution, expired

        /// For the 401 answer.
        public var message: String {
            switch self {
            case .malformed: "malformed stream token"
            case .badSignature: "stream token signature does not match"
            case .otherExecution: "stream token is for another execution"
            case .expired: "stream token expired; ask for a new one"
            }
        }
    }

    /// The signing key for tokens, from the id secret (another purpose, so another key).
    public static func signingKey(idSecret: [UInt8]) -> [UInt8] {
        Digest.hmacSHA256(key: idSecret, Array("tether stream tokens v1".utf8))
    }

    /// A token for `executionID` and the key `keyID`, valid until `expiresAt` (milliseconds since the epoch).
    public static func make(executionID: String, keyID: String, expiresAt: Int64, key: [UInt8]) -> String {
        let body = "st1.\(executionID).\(keyID).\(expiresAt)"
        return body + "." + mac(body, key)
    }

    /// The key id a token was made for, if it is a valid token for `executionID` at `now`.
    public static func check(_ token: String, executionID: String, key: [UInt8], now: Int64) -> Result<
        String, Refusal
    > {
        guard token.utf8.count <= 512 else { return .failure(.malformed) }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0] == "st1", let expiresAt = Int64(parts[3]), parts[4].utf8.count == 64
        else { return .failure(.malformed) }
        let body = parts[0..<4].joined(separator: ".")
        guard APIKeys.constantTimeEqual(String(parts[4]), mac(body, key)) else { return .failure(.badSignature) }
        guard parts[1] == executionID else { return .failure(.otherExecution) }
        // Never longer than a token is made for (a minute of clock skew between gateways allowed).
        guard now < expiresAt, expiresAt <= now + lifetimeMilliseconds + 60_000 else { return .failure(.expired) }
        return .success(String(parts[2]))
    }

    private static func mac(_ body: String, _ key: [UInt8]) -> String {
        Digest.hex(Digest.hmacSHA256(key: key, Array(body.utf8)))
    }
}
