import Foundation
import TetherCore

/// A benchmark's results: each line printed as it is measured, and the figures behind the lines kept under dotted
/// names (`throughput.eventsPerSecond`), written as one JSON object by `--json` so that runs can be compared.
struct BenchReport {
    private var root: [String: JSON] = [:]

    /// A report that starts with the machine, the time and the command line.
    init(arguments: [String] = CommandLine.arguments) {
        set("machine.cores", ProcessInfo.processInfo.activeProcessorCount)
        set("machine.memoryGiB", (Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824).rounded())
        set("machine.cpu", Self.cpuModel())
        set("date", ISO8601DateFormatter().string(from: Date()))
        root["arguments"] = .array(arguments.dropFirst().map { .string($0) })
    }

    /// Prints one line of the results.
    func line(_ text: String) { print(text) }

    /// Keeps a figure under a dotted name (its objects made on the way).
    mutating func set(_ name: String, _ value: Double) { put(name, .number(value)) }

    /// Keeps a count under a dotted name.
    mutating func set(_ name: String, _ value: Int) { put(name, .number(Double(value))) }

    /// Keeps a text under a dotted name.
    mutating func set(_ name: String, _ value: String) { put(name, .string(value)) }

    /// Keeps a list of objects (one per second of a timeline, say) under a dotted name.
    mutating func set(_ name: String, rows: [[String: Double]]) {
        put(name, .array(rows.map { row in .object(row.mapValues { .number($0) }) }))
    }

    /// The whole report as JSON, keys sorted.
    var json: String { JSON.object(root).rendered }

    /// Writes ``json`` to `path`, with a final newline.
    func write(to path: String) throws {
        try Data((json + "\n").utf8).write(to: URL(fileURLWithPath: path))
    }

    private mutating func put(_ name: String, _ value: JSON) {
        let path = name.split(separator: ".").map(String.init)
        root = Self.inserting(value, at: path[...], into: root)
    }

    private static func inserting(_ value: JSON, at path: ArraySlice<String>, into object: [String: JSON])
        -> [String: JSON]
    {
        var object = object
        guard let first = path.first else { return object }
        if path.count == 1 {
            object[first] = value
        } else {
            var inner: [String: JSON] = [:]
            if case .object(let existing) = object[first] { inner = existing }
            object[first] = .object(inserting(value, at: path.dropFirst(), into: inner))
        }
        return object
    }

    private static func cpuModel() -> String {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "" }
        for line in info.split(separator: "\n") where line.hasPrefix("model name") {
            return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        }
        return ""
    }
}
