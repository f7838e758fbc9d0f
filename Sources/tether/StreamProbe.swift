import Foundation
import NIOCore

/// One benchmark stream's measurements, taken on its connection's event loop as chunks arrive, and read once the
/// response has ended (the end is a promise completed on that loop, so the reads happen after every write).
final class StreamProbe: @unchecked Sendable {
    private let start: UInt64
    private var scanner: FrameIDScanner
    private var ttfb = 0.0
    private var firstByteWall = 0.0
    private var frames = 0
    private var latencies: [(appendedMilliseconds: Double, latency: Double)] = []
    private let keepingIDs: Bool
    private var ids: [String] = []
    private let onFinal: (@Sendable () -> Void)?

    /// A probe for a stream of about `expected` frames, POSTed at `start` (uptime nanoseconds). `final` is what the
    /// data line of the stream's last awaited frame holds; `onFinal` runs once when it has been read.
    init(
        expected: Int, start: UInt64, keepingIDs: Bool = false, final: String = FrameIDScanner.finishReasonStop,
        onFinal: (@Sendable () -> Void)? = nil
    ) {
        self.start = start
        self.keepingIDs = keepingIDs
        self.onFinal = onFinal
        scanner = FrameIDScanner(final: final)
        latencies.reserveCapacity(expected + 4)
    }

    func take(_ chunk: ByteBuffer) {
        let nowNanos = DispatchTime.now().uptimeNanoseconds
        let wallMicros = Double(Self.wallClockMicroseconds())
        if ttfb == 0 {
            ttfb = Double(nowNanos - start) / 1e6
            firstByteWall = wallMicros / 1000
        }
        let sawFinal = scanner.sawFinal
        scanner.scan(chunk) { milliseconds, id in
            frames += 1
            latencies.append((milliseconds, max(0, wallMicros - milliseconds * 1000) / 1000))
            if keepingIDs { ids.append(String(decoding: id, as: UTF8.self)) }
        }
        if !sawFinal, scanner.sawFinal { onFinal?() }
    }

    var result: StreamBench.StreamResult {
        StreamBench.StreamResult(
            ttfb: ttfb, firstByteWallMilliseconds: firstByteWall, frames: frames, latencies: latencies,
            finished: scanner.sawFinal, ids: ids)
    }

    private static func wallClockMicroseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }
}

/// A light reader of the SSE bytes for the benchmark: it only finds `id: <ms>-<seq>` lines and the final frame, so
/// that the clients spend as little as possible of the machine the server shares with them. (Full parsing is
/// tested in the integration tests.)
struct FrameIDScanner {
    /// The final frame of a reply that ended (the chat format's `finish_reason: stop`).
    static let finishReasonStop = "\"finish_reason\":\"stop\""
    private var line: [UInt8] = []
    private(set) var sawFinal = false
    private let final: [UInt8]

    /// A scanner that watches the data lines for `final`.
    init(final: String = Self.finishReasonStop) { self.final = Array(final.utf8) }

    /// Calls `onFrame` with each frame's id: its milliseconds, and the whole id's bytes.
    mutating func scan(_ chunk: ByteBuffer, onFrame: (Double, ArraySlice<UInt8>) -> Void) {
        for byte in chunk.readableBytesView {
            guard byte == 10 else {
                line.append(byte)
                continue
            }
            if line.count > 4, line[0] == 105, line[1] == 100, line[2] == 58, line[3] == 32 {  // "id: "
                var ms = 0.0
                for digit in line[4...] {
                    guard digit >= 48 && digit <= 57 else { break }
                    ms = ms * 10 + Double(digit - 48)
                }
                onFrame(ms, line[4...])
            } else if !sawFinal, line.count > final.count, line.starts(with: Array("data: ".utf8)) {
                sawFinal = Self.contains(line, final)
            }
            line.removeAll(keepingCapacity: true)
        }
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard haystack.count >= needle.count else { return false }
        for start in stride(from: haystack.count - needle.count, through: 0, by: -1)
        where haystack[start] == needle[0] && haystack[start..<start + needle.count].elementsEqual(needle) {
            return true
        }
        return false
    }
}
