import Foundation
import TetherCore

/// What the model says in one turn: text, then at most one tool call.
public struct ModelTurn: Sendable, Hashable {
    /// The reply text of the turn, streamed token by token.
    public var text: String
    /// A tool the model calls at the end of the turn, if any.
    public var toolCall: (name: String, input: JSON)?

    /// Makes a turn.
    public init(text: String, toolCall: (name: String, input: JSON)? = nil) {
        self.text = text
        self.toolCall = toolCall
    }

    /// Compares text and tool call.
    public static func == (lhs: ModelTurn, rhs: ModelTurn) -> Bool {
        lhs.text == rhs.text && lhs.toolCall?.name == rhs.toolCall?.name && lhs.toolCall?.input == rhs.toolCall?.input
    }

    /// Hashes the text.
    public func hash(into hasher: inout Hasher) { hasher.combine(text) }
}

/// The conversation so far, as a model sees it.
public struct ModelContext: Sendable {
    /// The input messages.
    public var messages: JSON
    /// The tool calls made so far in this execution, in order, with their results.
    public var toolCalls: [(name: String, input: JSON, result: ToolResult)]

    /// Makes a context.
    public init(messages: JSON, toolCalls: [(name: String, input: JSON, result: ToolResult)]) {
        self.messages = messages
        self.toolCalls = toolCalls
    }

    /// The text of the last user message.
    public var lastUserText: String {
        for message in (messages.arrayValue ?? []).reversed() where message["role"]?.stringValue == "user" {
            if let text = message["content"]?.stringValue { return text }
            let parts = message["content"]?.arrayValue ?? []
            return parts.compactMap { $0["text"]?.stringValue }.joined(separator: " ")
        }
        return ""
    }
}

/// The built-in demo model: deterministic, offline, no API key. It answers from the last user message:
/// - "weather" → calls `get_weather` (no approval), then reports the forecast;
/// - "time" → calls `get_time` (no approval), then reports the time;
/// - "email" → calls `send_email`, which needs a human's approval, then reports the result, or the denial and its
///   reason word for word;
/// - "count to N" → streams the numbers 1 to N, one token each (N at most 100,000; for benchmarks);
/// - anything else → a short reply that says what it can do.
public struct DemoModel: Sendable {
    /// Makes the demo model.
    public init() {}

    /// The model's next turn.
    public func respond(_ context: ModelContext) -> ModelTurn {
        let text = context.lastUserText
        let lower = text.lowercased()
        if let last = context.toolCalls.last {
            return report(last.name, last.input, last.result)
        }
        if let count = Self.countTarget(lower) {
            return ModelTurn(text: (1...count).map(String.init).joined(separator: " "))
        }
        if lower.contains("email") || lower.contains("e-mail") {
            let to = Self.emailAddress(in: text) ?? "team@example.com"
            let input: JSON = [
                "to": .string(to), "subject": "Hello from Tether",
                "body": .string("Hi! This message was drafted by Tether's demo agent. You asked: \(text)"),
            ]
            return ModelTurn(
                text: "I'll draft that email to \(to) and ask for your approval before sending it.",
                toolCall: ("send_email", input))
        }
        if lower.contains("weather") {
            let city = Self.city(in: text) ?? "Paris"
            return ModelTurn(
                text: "Let me check the weather in \(city).", toolCall: ("get_weather", ["city": .string(city)]))
        }
        if lower.contains("time") {
            return ModelTurn(text: "Let me look at the clock.", toolCall: ("get_time", ["timezone": "UTC"]))
        }
        return ModelTurn(
            text: "Hello! I am Tether's demo agent. You said: \"\(text)\". Ask me about the weather, the time, "
                + "or to send an email (that one needs your approval).")
    }

    private func report(_ tool: String, _ input: JSON, _ result: ToolResult) -> ModelTurn {
        switch (tool, result) {
        case ("get_weather", .output(let output)):
            let city = output["city"]?.stringValue ?? "the city"
            let forecast = output["forecast"]?.stringValue ?? "unknown"
            let temperature = output["temperatureC"]?.numberValue.map { String(Int($0)) } ?? "?"
            return ModelTurn(text: "The weather in \(city) is \(forecast), \(temperature)°C.")
        case ("get_time", .output(let output)):
            return ModelTurn(text: "It is \(output["utc"]?.stringValue ?? "unknown") (UTC).")
        case ("send_email", .output(let output)):
            let to = input["to"]?.stringValue ?? "the recipient"
            return ModelTurn(
                text: "Done: I sent the email to \(to) (message id \(output["messageId"]?.stringValue ?? "?")).")
        case ("send_email", .denied(let reason)):
            if let reason, !reason.isEmpty {
                return ModelTurn(text: "I did not send the email. You declined: \(reason)")
            }
            return ModelTurn(text: "I did not send the email: you declined without giving a reason.")
        case (_, .denied(let reason)):
            return ModelTurn(text: "I did not run \(tool). You declined: \(reason ?? "no reason given")")
        case (_, .error(let message)):
            return ModelTurn(text: "The tool \(tool) failed: \(message)")
        case (_, .output(let output)):
            return ModelTurn(text: "\(tool) returned \(output.rendered).")
        }
    }

    /// The reply split into tokens as the demo streams them: words with their following space.
    public static func tokens(_ text: String) -> [String] {
        var tokens: [String] = []
        var current = ""
        for character in text {
            current.append(character)
            if character == " " {
                tokens.append(current)
                current = ""
            }
        }
        if !current.isEmpty { tokens.append(current) }
        return tokens
    }

    /// N in "count to N" (1...100,000), else `nil`.
    static func countTarget(_ lower: String) -> Int? {
        guard let range = lower.range(of: "count to ") else { return nil }
        let digits = lower[range.upperBound...].prefix { $0.isNumber }
        guard let n = Int(digits), (1...100_000).contains(n) else { return nil }
        return n
    }

    static func emailAddress(in text: String) -> String? {
        for word in text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "<" || $0 == ">" }) {
            let trimmed = word.trimmingCharacters(in: CharacterSet(charactersIn: ".;:!?()\"'"))
            let parts = trimmed.split(separator: "@")
            if parts.count == 2, !parts[0].isEmpty, parts[1].contains(".") { return trimmed }
        }
        return nil
    }

    static func city(in text: String) -> String? {
        let words = text.split(separator: " ").map {
            $0.trimmingCharacters(in: CharacterSet(charactersIn: ".,;:!?\"'"))
        }
        guard let index = words.lastIndex(where: { $0.lowercased() == "in" }), index + 1 < words.count else {
            return nil
        }
        let city = words[index + 1]
        guard !city.isEmpty else { return nil }
        return city.prefix(1).uppercased() + city.dropFirst()
    }
}
