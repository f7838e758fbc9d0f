/// One server-sent event, as the SSE standard dispatches it.
public struct SSEEvent: Sendable, Hashable {
    /// The `id:` field, if the frame had one.
    public var id: String?
    /// The `event:` field, if any.
    public var event: String?
    /// The `data:` lines, joined with newlines.
    public var data: String
    /// The frame exactly as received, blank line included.
    public var raw: String
}

/// An incremental SSE parser: feed bytes as they arrive, take complete events and comments out.
public struct SSEParser: Sendable {
    private var buffer: [UInt8] = []
    private var frameLines: [String] = []
    private var frameRaw = ""
    /// Comments (`: ping`) seen so far, counted.
    public private(set) var comments = 0

    /// Makes a parser.
    public init() {}

    /// Feeds bytes; returns the events completed by them.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [SSEEvent] {
        buffer.append(contentsOf: bytes)
        var events: [SSEEvent] = []
        var start = 0
        var index = 0
        while index < buffer.count {
            if buffer[index] == 10 {
                var end = index
                if end > start && buffer[end - 1] == 13 { end -= 1 }
                let line = String(decoding: buffer[start..<end], as: UTF8.self)
                frameRaw += String(decoding: buffer[start...index], as: UTF8.self)
                if line.isEmpty {
                    if let event = dispatch() { events.append(event) }
                } else {
                    frameLines.append(line)
                }
                start = index + 1
            }
            index += 1
        }
        buffer.removeFirst(start)
        return events
    }

    private mutating func dispatch() -> SSEEvent? {
        defer {
            frameLines = []
            frameRaw = ""
        }
        var id: String?
        var name: String?
        var data: [String] = []
        var sawField = false
        for line in frameLines {
            if line.hasPrefix(":") {
                comments += 1
                continue
            }
            sawField = true
            let field: Substring
            var value: Substring
            if let colon = line.firstIndex(of: ":") {
                field = line[..<colon]
                value = line[line.index(after: colon)...]
                if value.hasPrefix(" ") { value = value.dropFirst() }
            } else {
                field = Substring(line)
                value = ""
            }
            switch field {
            case "id": id = String(value)
            case "event": name = String(value)
            case "data": data.append(String(value))
            default: break
            }
        }
        guard sawField, !data.isEmpty || id != nil else { return nil }
        return SSEEvent(id: id, event: name, data: data.joined(separator: "\n"), raw: frameRaw)
    }
}
