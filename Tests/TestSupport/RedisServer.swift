import Foundation
import RedisKit

#if canImport(Glibc)
    import Glibc
#endif

/// A throwaway `redis-server` for tests that need one of their own: to kill it, restart it (on the same port,
/// with the same directory: pass `--appendonly yes` to keep its data), or give it a password. Ordinary tests share
/// the server `scripts/test` starts (`TETHER_TEST_REDIS_URL`).
public final class RedisServer: @unchecked Sendable {
    /// The port it listens on, on 127.0.0.1.
    public let port: Int
    /// Its working directory (removed when the server is released).
    public let directory: URL
    /// Arguments added to the defaults (later ones win).
    public let extraArguments: [String]
    private var process: Process?

    /// The URL of the server of `scripts/test`, or of one started for this test process when run by plain
    /// `swift test`.
    public static let shared: String = {
        if let url = ProcessInfo.processInfo.environment["TETHER_TEST_REDIS_URL"] { return url }
        let server = try! RedisServer()
        sharedKeepAlive = server
        return server.url
    }()
    nonisolated(unsafe) private static var sharedKeepAlive: RedisServer?

    /// Starts a server on `port`, or on a free one.
    public init(port: Int? = nil, arguments: [String] = []) throws {
        self.port = try port ?? freePort()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tether-redis-\(self.port)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        extraArguments = arguments
        try start()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// `redis://127.0.0.1:<port>`.
    public var url: String { "redis://127.0.0.1:\(port)" }
    /// Its unix socket.
    public var socketPath: String { directory.appendingPathComponent("redis.sock").path }

    /// Starts (or restarts) the server on the same port and waits until it accepts connections.
    public func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments =
            [
                "redis-server", "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", directory.path, "--unixsocket", socketPath, "--unixsocketperm", "700",
                "--logfile", directory.appendingPathComponent("redis.log").path,
            ] + extraArguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            // Redis opens its unix socket after its TCP port: wait for both, or a test on the socket races it.
            if canConnect(port: port), FileManager.default.fileExists(atPath: socketPath) { return }
            usleep(10_000)
        }
        throw RedisError(.unavailable, "redis-server on port \(port) did not start")
    }

    /// Stops the server (SIGKILL: as abrupt as a crash) and waits for it to exit.
    public func stop() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    /// Freezes the server (SIGSTOP): it holds its connections but reads nothing until ``resume()``.
    public func pause() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGSTOP)
    }

    /// Lets a paused server go on (SIGCONT).
    public func resume() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGCONT)
    }
}

/// A TCP port nobody listens on at 127.0.0.1 (the kernel picks it).
public func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
    }
    guard bound else { throw RedisError(.unavailable, "no free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Whether something accepts connections on 127.0.0.1:`port`.
public func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
        }
    }
}

/// A key prefix unique to one test, so tests sharing a server never touch each other's keys.
public func uniqueKey(_ name: String = #function) -> String {
    "test:\(UUID().uuidString.prefix(8)):\(name.prefix(while: { $0 != "(" }))"
}

/// Polls `condition` until it holds or `seconds` pass; returns its last answer.
public func eventually(
    _ seconds: Double = 10, _ condition: @Sendable () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}
