import Foundation
import RedisKit

#if canImport(Glibc)
    import Glibc
#endif

/// Whether process `pid` holds a socket listening on TCP `port` (IPv4 or IPv6), read from `/proc`: a `/healthz`
/// answered on the port could come from another test's process that took the same port first.
public func listens(pid: Int32, port: Int) -> Bool {
    let hexPort = String(format: ":%04X", port)
    var inodes: Set<String> = []
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            guard fields.count > 9, fields[1].hasSuffix(hexPort), fields[3] == "0A" else { continue }
            inodes.insert("socket:[\(fields[9])]")
        }
    }
    guard !inodes.isEmpty, let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else {
        return false
    }
    return fds.contains { fd in
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")).map(inodes.contains)
            ?? false
    }
}

/// Starts a server process on a free port until it is the one listening there: `start` launches it on the port it
/// is given; a process that exits before it listens (the port was taken between ``freePort()`` and its bind) is
/// started again on another port. Returns the process and its port.
public func startListening(
    seconds: Double = 60, _ start: (Int) throws -> Process
) async throws -> (process: Process, port: Int) {
    for _ in 0..<5 {
        let port = try freePort()
        let process = try start(port)
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        // Once seen listening it is taken as listening: /proc/net/tcp is read in pieces while sockets come and go,
        // and a line can be missed from one read to the next.
        while ContinuousClock.now < deadline, process.isRunning {
            if listens(pid: process.processIdentifier, port: port) { return (process, port) }
            try await Task.sleep(for: .milliseconds(10))
        }
        let killed = process.isRunning
        if killed { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        print(
            "\(process.executableURL?.lastPathComponent ?? "a server") \(process.arguments?.first ?? "") did not "
                + "listen on port \(port) "
                + (killed ? "within \(seconds) s (killed)" : "(it exited: status \(process.terminationStatus))")
                + "; trying another port")
    }
    throw RedisError(.unavailable, "no process of ours listened on the ports it was given")
}
