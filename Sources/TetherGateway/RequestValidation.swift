import TetherCore

/// A validated `POST /run/api/executions` body.
public struct CreateExecutionRequest: Sendable {
    /// The messages, as sent.
    public var messages: JSON
    /// The conversation id, if sent.
    public var conversationId: String?
    /// Headers to forward to tools, if sent.
    public var forwardedHeaders: [String: String]

    /// The request as sent, in one canonical JSON form (absent members as `null`), for the idempotency digest:
    /// equal for the same request whatever its whitespace or member order.
    public var canonical: JSON {
        [
            "messages": messages, "conversationId": conversationId.map { .string($0) } ?? .null,
            "forwardedHeaders": .object(forwardedHeaders.mapValues { .string($0) }),
        ]
    }
}

/// Validation of request bodies, with messages precise enough to fix the request from.
public enum RequestValidation {
    /// Roles a message may have.
    public static let roles: Set<String> = ["system", "user", "assistant", "tool", "function"]
    /// Most forwarded headers accepted.
    public static let maxForwardedHeaders = 64
    /// Most bytes of forwarded header names and values together.
    public static let maxForwardedHeaderBytes = 16 * 1024

    /// Validates a create body.
    public static func createExecution(_ body: [UInt8]) throws(APIError) -> CreateExecutionRequest {
        let object = try jsonObject(body)
        guard let messagesValue = object["messages"] else {
            throw .badRequest("invalid_messages", "messages is required")
        }
        guard case .array(let messages) = messagesValue else {
            throw .badRequest("invalid_messages", "messages must be an array, got \(messagesValue.typeName)")
        }
        guard !messages.isEmpty else { throw .badRequest("invalid_messages", "messages must not be empty") }
        var normalized: [JSON] = []
        var empty: [JSON] = []
        for (index, message) in messages.enumerated() {
            let (message, isEmpty) = try normalizedMessage(message, at: "messages[\(index)]")
            if isEmpty { empty.append(message) } else { normalized.append(message) }
        }
        // A UI message with no text (an assistant's tool or data parts) gives a model nothing to read (Anthropic
        // refuses empty content): left out, unless nothing else is there.
        if normalized.isEmpty { normalized = empty }

        var conversationId: String?
        if let value = object["conversationId"], value != .null {
            guard case .string(let id) = value else {
                throw .badRequest("invalid_conversation_id", "conversationId must be a string, got \(value.typeName)")
            }
            guard isValidConversationID(id) else {
                throw .badRequest(
                    "invalid_conversation_id", "conversationId must be 1-256 characters of A-Z a-z 0-9 . _ : -")
            }
            conversationId = id
        }

        var forwarded: [String: String] = [:]
        if let value = object["forwardedHeaders"], value != .null {
            guard case .object(let headers) = value else {
                throw .badRequest(
                    "invalid_forwarded_headers", "forwardedHeaders must be an object of strings, got \(value.typeName)")
            }
            guard headers.count <= maxForwardedHeaders else {
                throw .badRequest(
                    "invalid_forwarded_headers",
                    "forwardedHeaders has \(headers.count) entries; at most \(maxForwardedHeaders)")
            }
            var bytes = 0
            for (name, headerValue) in headers.sorted(by: { $0.key < $1.key }) {
                guard case .string(let text) = headerValue else {
                    throw .badRequest(
                        "invalid_forwarded_headers",
                        "forwardedHeaders.\(name) must be a string, got \(headerValue.typeName)")
                }
                guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else {
                    throw .badRequest(
                        "invalid_forwarded_headers", "forwardedHeaders has an invalid header name \(JSON.quoted(name))")
                }
                guard !text.utf8.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }) else {
                    throw .badRequest("invalid_forwarded_headers", "forwardedHeaders.\(name) contains a line break")
                }
                bytes += name.utf8.count + text.utf8.count
                forwarded[name] = text
            }
            guard bytes <= maxForwardedHeaderBytes else {
                throw .badRequest(
                    "invalid_forwarded_headers",
                    "forwardedHeaders is \(bytes) bytes; at most \(maxForwardedHeaderBytes)")
            }
        }
        return CreateExecutionRequest(
            messages: .array(normalized), conversationId: conversationId, forwardedHeaders: forwarded)
    }

    /// A message as the worker reads it: `{role, content}` as sent, or an AI SDK UI message (`{id, role, parts}`)
    /// made into one; and whether it is a UI message with no text.
    private static func normalizedMessage(_ message: JSON, at path: String) throws(APIError) -> (JSON, Bool) {
        if case .object(let fields) = message, fields["content"] == nil || fields["content"] == .null,
            let parts = fields["parts"]
        {
            let converted = try uiMessage(role: fields["role"], parts: parts, at: path)
            return (converted, converted["content"] == "")
        }
        try validateMessage(message, at: path)
        return (message, false)
    }

    /// An AI SDK UI message as `{role, content}`: its text parts, and a user's image files. The other parts (steps,
    /// reasoning, `tool-<name>`, `dynamic-tool`, `data-*`, sources) are what a UI shows; the model is not given
    /// them again (Tether keeps each conversation's history, tool calls included, itself).
    private static func uiMessage(role: JSON?, parts: JSON, at path: String) throws(APIError) -> JSON {
        guard let role = role?.stringValue, ["system", "user", "assistant"].contains(role) else {
            throw .badRequest("invalid_messages", "\(path).role must be one of system, user, assistant")
        }
        guard case .array(let items) = parts else {
            throw .badRequest("invalid_messages", "\(path).parts must be an array, got \(parts.typeName)")
        }
        var texts: [String] = []
        var content: [JSON] = []
        for (index, part) in items.enumerated() {
            let partPath = "\(path).parts[\(index)]"
            guard case .object(let fields) = part, let type = fields["type"]?.stringValue else {
                throw .badRequest("invalid_messages", "\(partPath) must be an object with a type")
            }
            switch type {
            case "text":
                guard let text = fields["text"]?.stringValue else {
                    throw .badRequest("invalid_messages", "\(partPath).text must be a string")
                }
                texts.append(text)
                content.append(["type": "text", "text": .string(text)])
            case "file":
                guard let url = fields["url"]?.stringValue, let mediaType = fields["mediaType"]?.stringValue else {
                    throw .badRequest("invalid_messages", "\(partPath) must have url and mediaType strings")
                }
                if role == "user", mediaType.hasPrefix("image/") {
                    content.append(["type": "image_url", "image_url": ["url": .string(url)]])
                }
            default:
                break
            }
        }
        if role == "user", content.isEmpty {
            throw .badRequest("invalid_messages", "\(path) has no text or image part")
        }
        let whole: JSON = content.count == texts.count ? .string(texts.joined(separator: "\n\n")) : .array(content)
        return ["role": .string(role), "content": whole]
    }

    private static func validateMessage(_ message: JSON, at path: String) throws(APIError) {
        guard case .object(let fields) = message else {
            throw .badRequest("invalid_messages", "\(path) must be an object, got \(message.typeName)")
        }
        guard let role = fields["role"]?.stringValue, roles.contains(role) else {
            throw .badRequest(
                "invalid_messages", "\(path).role must be one of system, user, assistant, tool, function")
        }
        guard let content = fields["content"] else {
            throw .badRequest("invalid_messages", "\(path).content is required")
        }
        switch content {
        case .string: return
        case .array(let parts):
            for (index, part) in parts.enumerated() {
                let partPath = "\(path).content[\(index)]"
                guard case .object(let p) = part, let type = p["type"]?.stringValue else {
                    throw .badRequest("invalid_messages", "\(partPath) must be an object with a type")
                }
                switch type {
                case "text":
                    guard p["text"]?.stringValue != nil else {
                        throw .badRequest("invalid_messages", "\(partPath).text must be a string")
                    }
                case "image_url":
                    guard p["image_url"]?["url"]?.stringValue != nil else {
                        throw .badRequest("invalid_messages", "\(partPath).image_url.url must be a string")
                    }
                default:
                    throw .badRequest("invalid_messages", "\(partPath).type must be text or image_url")
                }
            }
        default:
            throw .badRequest(
                "invalid_messages",
                "\(path).content must be a string or an array of content parts, got \(content.typeName)")
        }
    }

    /// An `Idempotency-Key` header: 1-255 visible ASCII characters, or absent.
    public static func idempotencyKey(_ value: String?) throws(APIError) -> String? {
        guard let value else { return nil }
        guard !value.isEmpty, value.utf8.count <= 255, value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .badRequest("invalid_idempotency_key", "Idempotency-Key must be 1-255 visible ASCII characters")
        }
        return value
    }

    /// 1-256 characters of `[A-Za-z0-9._:-]`.
    public static func isValidConversationID(_ id: String) -> Bool {
        let bytes = id.utf8
        return !bytes.isEmpty && bytes.count <= 256
            && bytes.allSatisfy { b in
                (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || b == 46 || b == 95 || b == 58
                    || b == 45
            }
    }

    private static func isTokenByte(_ b: UInt8) -> Bool {
        (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || "!#$%&'*+-.^_`|~".utf8.contains(b)
    }

    /// Validates an approval body: `{approved: bool, reason?: string}`.
    public static func decision(_ body: [UInt8]) throws(APIError) -> (approved: Bool, reason: String?) {
        let object = try jsonObject(body)
        guard let approvedValue = object["approved"] else {
            throw .badRequest("invalid_request", "approved is required")
        }
        guard case .bool(let approved) = approvedValue else {
            throw .badRequest("invalid_request", "approved must be true or false, got \(approvedValue.typeName)")
        }
        var reason: String?
        if let value = object["reason"], value != .null {
            guard case .string(let text) = value else {
                throw .badRequest("invalid_request", "reason must be a string, got \(value.typeName)")
            }
            // Counted in Unicode scalars, as JSON Schema's maxLength counts (the OpenAPI document says 4096).
            guard text.unicodeScalars.count <= 4096 else {
                throw .badRequest("invalid_request", "reason is longer than 4096 characters")
            }
            reason = text
        }
        return (approved, reason)
    }

    /// The body as a JSON object, or the 400 that says why it is not one.
    private static func jsonObject(_ body: [UInt8]) throws(APIError) -> [String: JSON] {
        let json: JSON
        do {
            json = try JSON.parse(body)
        } catch {
            throw .badRequest("invalid_json", "request body is not valid JSON: \(error.reason)")
        }
        guard case .object(let object) = json else {
            throw .badRequest("invalid_request", "request body must be a JSON object, got \(json.typeName)")
        }
        return object
    }
}
