import Foundation
import Logging

/// The process's limit on open files (`RLIMIT_NOFILE`), raised to its hard limit at startup: every client
/// connection, Redis connection and socket of a gateway is a file, and the usual soft limit (1,024) is far below what
/// a gateway holding tens of thousands of SSE clients needs. No hand-set `ulimit` is needed; above the hard limit only
/// the administrator can go (`LimitNOFILE=` in a systemd unit, `--ulimit nofile=` for a container).
enum OpenFileLimit {
    /// The soft limit before and after the raise (equal when it was at the hard limit already, or the raise failed).
    static let raised: (before: UInt64, after: UInt64) = raise()

    #if os(Linux)
        private static let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
        private static let resource = RLIMIT_NOFILE
    #endif

    private static func raise() -> (before: UInt64, after: UInt64) {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return (0, 0) }
        let before = UInt64(limit.rlim_cur)
        guard limit.rlim_cur < limit.rlim_max else { return (before, before) }
        var wanted = limit
        wanted.rlim_cur = limit.rlim_max
        guard setrlimit(resource, &wanted) == 0 else { return (before, before) }
        return (before, UInt64(wanted.rlim_cur))
    }

    /// Logs the limit, and how it was raised, at startup.
    static func log(_ logger: Logger) {
        let (before, after) = raised
        if after > before {
            logger.info("open files: limit raised from \(before) to \(after) (the hard limit)")
        } else {
            logger.info("open files: limit \(after)")
        }
    }
}
