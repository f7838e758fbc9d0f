import Foundation
import Logging

/// The process's limit on open files (`RLIMIT_NOFILE`), raised to its hard limit at startup: every client
/// connection, Redis connection and socket of a gateway is a file, and the usual soft limit (1,024) is far below what
/// a gateway holding tens of thousands of SSE clients needs. No hand-set `ulimit` is needed; above the hard limit only
/// the administrator can go (`LimitNOFILE=` in a systemd unit, `--ulimit nofile=` for a container).
public enum OpenFileLimit {
    /// The soft limit before and after the raise made at first use (equal when it was at the hard limit already, or
    /// the raise was refused).
    public static let raised: (before: UInt64, after: UInt64) = raiseToHardLimit()

    #if os(Linux)
        private static let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
        private static let resource = RLIMIT_NOFILE
    #endif

    /// The soft and hard limits now, or `nil` when they cannot be read.
    public static var current: (soft: UInt64, hard: UInt64)? {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return nil }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }

    /// Sets the soft limit to `soft` (at most the hard limit); `false` when the system refused.
    @discardableResult
    public static func setSoftLimit(_ soft: UInt64) -> Bool {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return false }
        limit.rlim_cur = rlim_t(min(soft, UInt64(limit.rlim_max)))
        return setrlimit(resource, &limit) == 0
    }

    /// Raises the soft limit to the hard limit: the soft limit before and after.
    public static func raiseToHardLimit() -> (before: UInt64, after: UInt64) {
        guard let (soft, hard) = current else { return (0, 0) }
        guard soft < hard, setSoftLimit(hard) else { return (soft, soft) }
        return (soft, current?.soft ?? soft)
    }

    /// Logs the limit, and how it was raised at startup.
    public static func log(_ logger: Logger) {
        let (before, after) = raised
        if after > before {
            logger.info("open files: limit raised from \(before) to \(after) (the hard limit)")
        } else {
            logger.info("open files: limit \(after)")
        }
    }
}
