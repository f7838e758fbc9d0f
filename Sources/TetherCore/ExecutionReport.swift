import Foundation

/// What `tether inspect` prints for one execution, from what Redis holds of it: the record, the lease, a timeline of
/// the event log for people (a turn's streamed text and a tool call's argument fragments joined into one line each),
/// the approvals with their decisions, and what a resumed run would start from.
public struct ExecutionReport: Sendable {
    /// One event log entry as stored: its id and its fields (`type data ts [fence] [status]`).
    public typealias Entry = (id: String, fields: [String: String])

    /// The meta hash, parsed.
    public var record: ExecutionRecord
    /// The whole event log, oldest first.
    public var entries: [Entry]
    /// The approvals hash: each request, and its decision once made.
    public var approvals: [ApprovalEntry]
    /// The `parked` field of the record (when it was parked to wait for a human), if it is.
    public var parkedAt: String?
    /// Its score in the deadline set (milliseconds), if it is there.
    public var deadline: Int64?
    /// The checkpoint's `through`, if there is one.
    public var checkpointThrough: String?
    /// When the lease was last taken (the record's `claimedAt`).
    public var claimedAt: String?

    /// A report of these parts.
    public init(
        record: ExecutionRecord, entries: [Entry], approvals: [ApprovalEntry], parkedAt: String? = nil,
        deadline: Int64? = nil, checkpointThrough: String? = nil, claimedAt: String? = nil
    ) {
        self.record = record
        self.entries = entries
        self.approvals = approvals
        self.parkedAt = parkedAt
        self.deadline = deadline
        self.checkpointThrough = checkpointThrough
        self.claimedAt = claimedAt
    }

    /// The report as lines of text.
    public func rendered(textLimit: Int = 240) -> String {
        var out: [String] = []
        let r = record
        out.append("execution \(r.id)  \(r.status.rawValue)\(parkedAt.map { " (parked since \($0))" } ?? "")")
        out.append("  tenant \(r.tenant)  agent \(r.agentId)  key \(r.keyId)")
        out.append(
            "  conversation \(r.conversationId)\(r.conversationNew ? " (started by it)" : "")  history items \(r.historyLength)"
        )
        out.append("  created \(r.createdAt)  updated \(r.updatedAt)")
        if let error = r.error { out.append("  error \(error)") }
        let owner = r.owner.map { "owner \($0)" } ?? "no owner yet"
        out.append("lease: \(owner), fence \(r.fence)\(claimedAt.map { ", claimed at \($0)" } ?? "")")
        if let deadline {
            out.append("waiting: in the deadline set, due at \(Self.time(deadline, withDate: true))")
        }
        out.append(
            "checkpoint: "
                + (checkpointThrough.map { "through \($0) (a resumed run folds only what follows)" } ?? "none"))
        out.append("")
        out.append("timeline (\(entries.count) entries\(r.lastEventId.map { ", newest \($0)" } ?? "")):")
        out += timeline(textLimit: textLimit)
        out.append("")
        if approvals.isEmpty {
            out.append("approvals: none")
        } else {
            out.append("approvals:")
            for entry in approvals { out.append("  " + Self.describe(entry)) }
        }
        return out.joined(separator: "\n") + "\n"
    }

    // MARK: - Timeline

    /// A line being built: consecutive entries that read as one (a turn's text, one call's fragments).
    private struct Run {
        var first: Entry
        var count = 1
        var kind: String
        var key: String
        var text: String
    }

    private func timeline(textLimit: Int) -> [String] {
        var lines: [String] = []
        var run: Run?
        let start = entries.first.flatMap { Int64($0.fields["ts"] ?? "") }
        func flush() {
            guard let done = run else { return }
            let label = done.count > 1 ? "\(done.kind) ×\(done.count)" : done.kind
            lines.append(line(done.first, label, Self.clip(done.text, textLimit), start: start))
            run = nil
        }
        for entry in entries {
            let type = entry.fields["type"] ?? "?"
            let data = (try? JSON.parse(entry.fields["data"] ?? "{}")) ?? .object([:])
            switch type {
            case EventType.text.rawValue:
                let key = (data["turnId"]?.stringValue ?? "") + "/" + (data["partId"]?.stringValue ?? "")
                if run?.kind == type, run?.key == key {
                    run!.count += 1
                    run!.text += data["text"]?.stringValue ?? ""
                } else {
                    flush()
                    run = Run(first: entry, kind: type, key: key, text: data["text"]?.stringValue ?? "")
                }
                continue
            case EventType.toolCallStart.rawValue:
                flush()
                let key = (data["turnId"]?.stringValue ?? "") + "/" + (data["index"].map(\.rendered) ?? "")
                let name = data["toolName"]?.stringValue ?? "?"
                let id = data["toolCallId"]?.stringValue ?? "?"
                run = Run(first: entry, kind: "tool-call", key: key, text: "\(name) \(id) ")
                continue
            case EventType.toolCallDelta.rawValue:
                let key = (data["turnId"]?.stringValue ?? "") + "/" + (data["index"].map(\.rendered) ?? "")
                if run?.kind == "tool-call", run?.key == key {
                    run!.count += 1
                    run!.text += data["argumentsDelta"]?.stringValue ?? ""
                    continue
                }
            default:
                break
            }
            flush()
            lines.append(line(entry, type, Self.clip(Self.summary(type, data), textLimit), start: start))
        }
        flush()
        return lines
    }

    private func line(_ entry: Entry, _ label: String, _ text: String, start: Int64?) -> String {
        let ts = Int64(entry.fields["ts"] ?? "") ?? 0
        let offset = start.map { String(format: "+%.3fs", Double(ts - $0) / 1000) } ?? ""
        let fence = entry.fields["fence"].map { "f\($0)" } ?? "gw"
        let status = entry.fields["status"].map { "  → \($0)" } ?? ""
        let padded = label.padding(toLength: max(label.count, 26), withPad: " ", startingAt: 0)
        return "  \(Self.time(ts, withDate: false)) \(offset.padding(toLength: 10, withPad: " ", startingAt: 0)) "
            + "\(fence.padding(toLength: 3, withPad: " ", startingAt: 0)) \(padded) \(text)\(status)"
    }

    /// What one entry says, in a few words.
    static func summary(_ type: String, _ data: JSON) -> String {
        let call = data["toolCallId"]?.stringValue ?? ""
        let name = data["toolName"]?.stringValue
        switch type {
        case EventType.started.rawValue:
            return "agent \(data["agentId"]?.stringValue ?? "?")"
        case EventType.turnStarted.rawValue:
            return "\(data["turnId"]?.stringValue ?? "?") step \(data["step"].map(\.rendered) ?? "?")"
        case EventType.turnFinished.rawValue:
            let usage = data["usage"]
            let tokens = [usage?["inputTokens"], usage?["outputTokens"]].map { count in
                count?.numberValue.map { String(Int($0)) } ?? "?"
            }
            let calls = (data["toolCalls"]?.arrayValue ?? []).compactMap { $0["toolName"]?.stringValue }
            return "\(data["turnId"]?.stringValue ?? "?") \(data["finishReason"]?.stringValue ?? "?")"
                + " tokens \(tokens[0]) in / \(tokens[1]) out"
                + (calls.isEmpty ? "" : " calls " + calls.joined(separator: ", "))
        case EventType.turnAborted.rawValue:
            return "\(data["turnId"]?.stringValue ?? "?") \(data["reason"]?.stringValue ?? "")"
        case EventType.approvalRequest.rawValue:
            return "\(name ?? "?") \(call) waits for approval"
                + (data["expiresAt"]?.stringValue.map { " until \($0)" } ?? "")
        case EventType.approvalResponse.rawValue:
            let approved = data["approved"]?.boolValue == true ? "approved" : "denied"
            let by = data["decidedBy"]?.stringValue.map { " by \($0)" } ?? ""
            let reason = data["reason"]?.stringValue.map { ": \($0)" } ?? ""
            return "\(call) \(approved)\(by)\(reason)"
        case EventType.toolStarted.rawValue:
            return "\(name ?? "?") \(call) attempt \(data["attempt"].map(\.rendered) ?? "?")"
        case EventType.toolOutput.rawValue:
            return "\(call) → \(data["output"].map { $0.stringValue ?? $0.rendered } ?? "")"
        case EventType.toolError.rawValue:
            return "\(call) error: \(data["errorText"]?.stringValue ?? data["message"]?.stringValue ?? data.rendered)"
        case EventType.toolDenied.rawValue:
            return "\(call) denied" + (data["reason"]?.stringValue.map { ": \($0)" } ?? "")
        case EventType.error.rawValue:
            return "\(data["code"]?.stringValue ?? "?"): \(data["message"]?.stringValue ?? "")"
        case EventType.finish.rawValue:
            return data["status"]?.stringValue ?? ""
        default:
            return data.rendered
        }
    }

    static func describe(_ entry: ApprovalEntry) -> String {
        let name = entry.request["toolName"]?.stringValue ?? "?"
        var text = "\(entry.toolCallId) \(name)"
        if let requested = entry.request["requestedAt"]?.stringValue { text += " requested \(requested)" }
        if let expires = entry.request["expiresAt"]?.stringValue { text += " expires \(expires)" }
        guard let decision = entry.decision else { return text + " → pending" }
        text += decision["approved"]?.boolValue == true ? " → approved" : " → denied"
        if let by = decision["decidedBy"]?.stringValue { text += " by \(by)" }
        if let at = decision["decidedAt"]?.stringValue { text += " at \(at)" }
        if let reason = decision["reason"]?.stringValue { text += ": \(reason)" }
        return text
    }

    /// One line of at most `limit` characters, newlines shown as `\n`.
    static func clip(_ text: String, _ limit: Int) -> String {
        let flat = text.replacingOccurrences(of: "\n", with: "\\n")
        guard flat.count > limit else { return flat }
        return String(flat.prefix(limit)) + "… (\(flat.count) characters)"
    }

    /// `HH:MM:SS.mmm` (UTC), with the date in front when asked.
    static func time(_ milliseconds: Int64, withDate: Bool) -> String {
        let iso = Identifiers.isoTimestamp(milliseconds: milliseconds)
        // 2026-12-03T09:01:11.123Z
        guard let t = iso.firstIndex(of: "T") else { return iso }
        return withDate ? iso : String(iso[iso.index(after: t)...].dropLast())
    }
}
