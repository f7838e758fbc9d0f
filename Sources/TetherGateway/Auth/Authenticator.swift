import Hummingbird
import Synchronization
import TetherCore

/// Resolves bearer tokens to principals, asking Redis as little as it can:
/// - keys of the configuration file are checked in memory;
/// - an id that does not carry a valid MAC under the id secret (``APIKeys/isIssued(_:secret:)``) is refused with no
///   Redis command, so a flood of made-up ids costs nothing but CPU;
/// - an issued id is looked up once per `keyCacheSeconds` and kept in a least-recently-used cache of
///   `keyCacheEntries` keys (found or not: a revoked or deleted key is refused from the cache too).
///
/// The id secret itself is read once, then again at most every ``secretRecheck`` (once a second while there is
/// none, so a gateway started before the first `tether keys create` picks it up).
public final class Authenticator: Sendable {
    /// The key store.
    public let apiKeys: APIKeys
    private let ttl: Duration
    private let state: Mutex<State>

    /// How often a known id secret is read again.
    static let secretRecheck: Duration = .seconds(60)
    /// How often a missing id secret is looked for again.
    static let absentSecretRecheck: Duration = .seconds(1)

    private struct Cached {
        var info: APIKeyInfo?
        var expires: ContinuousClock.Instant
    }

    private enum IDSecret {
        case unknown
        case loading(Task<[UInt8]?, any Error>, previous: [UInt8]?)
        case known([UInt8]?, until: ContinuousClock.Instant)
    }

    private struct State {
        var cache: LRUCache<String, Cached>
        var secret: IDSecret = .unknown
    }

    /// Makes an authenticator caching lookups for `ttl`, at most `capacity` keys.
    public init(apiKeys: APIKeys, ttl: Duration, capacity: Int) {
        self.apiKeys = apiKeys
        self.ttl = ttl
        self.state = Mutex(State(cache: LRUCache(capacity: max(1, capacity))))
    }

    /// Keys held in the cache now.
    public var cachedCount: Int { state.withLock { $0.cache.count } }

    /// The principal of an `Authorization` header; 401 when it is missing, malformed, unknown or revoked.
    public func principal(authorization header: String?) async throws -> Principal {
        guard let header else {
            throw APIError.unauthorized("missing Authorization header; send Authorization: Bearer <api key>")
        }
        guard header.utf8.count > 7, header.prefix(7).lowercased() == "bearer " else {
            throw APIError.unauthorized("Authorization must be Bearer <api key>")
        }
        let token = header.dropFirst(7).trimmingCharacters(in: .whitespaces)
        guard let (keyID, secret) = APIKeys.parse(String(token)) else {
            throw APIError.unauthorized("malformed API key; expected tk_<id>_<secret>")
        }
        let info: APIKeyInfo?
        if let configured = apiKeys.configured[keyID] {
            info = configured
        } else if let idSecret = try await idSecret(), APIKeys.isIssued(keyID, secret: idSecret) {
            info = try await lookup(keyID)
        } else {
            info = nil
        }
        guard let info, let principal = APIKeys.verify(secret: secret, against: info) else {
            throw APIError.unauthorized("unknown or revoked API key")
        }
        return principal
    }

    /// The principal of a stream token for `executionID` (see ``StreamTokens``): 401 when it is malformed, forged,
    /// for another execution or expired, or when its key is unknown or revoked now (as cached for a key). Only reads
    /// the id secret (re-read like the key ids' one, so a rotated secret voids old tokens within a minute): a
    /// request with no credentials never writes to Redis.
    public func principal(streamToken token: String, executionID: String) async throws -> Principal {
        guard let idSecret = try await idSecret() else {
            throw APIError.unauthorized(StreamTokens.Refusal.badSignature.message)
        }
        let key = StreamTokens.signingKey(idSecret: idSecret)
        switch StreamTokens.check(token, executionID: executionID, key: key, now: Identifiers.nowMilliseconds()) {
        case .failure(let refusal):
            throw APIError.unauthorized(refusal.message)
        case .success(let keyID):
            var info = apiKeys.configured[keyID]
            if info == nil, APIKeys.isIssued(keyID, secret: idSecret) { info = try await lookup(keyID) }
            guard let info, let principal = APIKeys.principal(of: info) else {
                throw APIError.unauthorized("unknown or revoked API key")
            }
            return principal
        }
    }

    /// The key to sign a new stream token with: from the id secret, made now if there is none yet (only a caller
    /// with a valid key gets here).
    public func streamTokenKey() async throws -> [UInt8] {
        if let secret = try await idSecret() { return StreamTokens.signingKey(idSecret: secret) }
        let secret = try await apiKeys.ensureIDSecret()
        state.withLock { $0.secret = .known(secret, until: ContinuousClock.now + Self.secretRecheck) }
        return StreamTokens.signingKey(idSecret: secret)
    }

    private func lookup(_ keyID: String) async throws -> APIKeyInfo? {
        let now = ContinuousClock.now
        let cached = state.withLock { state -> Cached? in
            guard let entry = state.cache.get(keyID), entry.expires > now else { return nil }
            return entry
        }
        if let cached { return cached.info }
        let info = try await apiKeys.lookup(id: keyID)
        state.withLock { $0.cache.set(keyID, Cached(info: info, expires: now + ttl)) }
        return info
    }

    /// The id secret, read by one caller at a time (others use the previous one meanwhile, or wait for the read).
    private func idSecret() async throws -> [UInt8]? {
        let now = ContinuousClock.now
        enum Next {
            case use([UInt8]?)
            case wait(Task<[UInt8]?, any Error>)
        }
        let next = state.withLock { state -> Next in
            let previous: [UInt8]?
            switch state.secret {
            case .known(let secret, let until) where now < until:
                return .use(secret)
            case .loading(let task, let previous):
                return previous.map { .use($0) } ?? .wait(task)
            case .known(let secret, _):
                previous = secret
            case .unknown:
                previous = nil
            }
            let task = Task { try await self.readIDSecret(previous: previous) }
            state.secret = .loading(task, previous: previous)
            return previous.map { .use($0) } ?? .wait(task)
        }
        switch next {
        case .use(let secret): return secret
        case .wait(let task): return try await task.value
        }
    }

    /// Reads the id secret and records it; after a failed read the previous one stays in use a little longer.
    private func readIDSecret(previous: [UInt8]?) async throws -> [UInt8]? {
        do {
            let secret = try await apiKeys.idSecret()
            let until = ContinuousClock.now + (secret == nil ? Self.absentSecretRecheck : Self.secretRecheck)
            state.withLock { $0.secret = .known(secret, until: until) }
            return secret
        } catch {
            state.withLock {
                $0.secret =
                    previous.map { .known($0, until: ContinuousClock.now + Self.absentSecretRecheck) } ?? .unknown
            }
            throw error
        }
    }
}

/// Puts the request's ``Principal`` into the context (``GatewayRequestContext/principal``), or answers 401. On the
/// routes that take one (the stream), a request without `Authorization` may carry a stream token as `?token=`.
struct AuthenticationMiddleware: RouterMiddleware {
    let authenticator: Authenticator
    var acceptsStreamToken = false

    func handle(
        _ request: Request, context: GatewayRequestContext,
        next: (Request, GatewayRequestContext) async throws -> Response
    ) async throws -> Response {
        var context = context
        if acceptsStreamToken, request.headers[.authorization] == nil,
            let token = request.uri.queryParameters.get("token")
        {
            let executionID = (try? Gateway.pathParameter("executionId", context)) ?? ""
            context.principal = try await authenticator.principal(streamToken: token, executionID: executionID)
        } else {
            context.principal = try await authenticator.principal(authorization: request.headers[.authorization])
        }
        // Every line this request logs names who it acts as, and its execution when the path has one.
        if let principal = context.principal {
            context.logger[metadataKey: "tenant"] = .string(principal.tenant)
            context.logger[metadataKey: "agent"] = .string(principal.agent)
            context.logger[metadataKey: "keyId"] = .string(principal.keyId)
        }
        if let id = try? Gateway.pathParameter("executionId", context) {
            context.logger[metadataKey: "executionId"] = .string(id)
        }
        return try await next(request, context)
    }
}
