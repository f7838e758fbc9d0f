import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization
import TetherCore

/// A model provider's server on loopback for tests (or a tool's endpoint): it answers each request with the next
/// scripted reply, sending
/// a body in the pieces given (so that the client sees chunk boundaries exactly where a test puts them, inside a
/// JSON string or a UTF-8 sequence), and records every request it got.
final class FakeProvider: Sendable {
    /// One scripted answer.
    struct Reply: Sendable {
        var status: HTTPResponse.Status = .ok
        var headers: [(String, String)] = [("Content-Type", "text/event-stream")]
        /// The body, in the pieces it is sent in, each flushed on its own.
        var pieces: [[UInt8]]
        /// Close the connection after the pieces instead of ending the response.
        var dropAfterPieces = false
        /// Pause between pieces.
        var pause: Duration = .milliseconds(3)
        /// Hold the response open after the pieces until the client goes away (a model that thinks forever).
        var hang = false

        /// A body cut into pieces at the given byte offsets.
        static func stream(_ body: [UInt8], cutAt offsets: [Int] = [], dropAfter: Bool = false) -> Reply {
            var pieces: [[UInt8]] = []
            var start = 0
            for offset in offsets.sorted() where offset > start && offset < body.count {
                pieces.append(Array(body[start..<offset]))
                start = offset
            }
            pieces.append(Array(body[start...]))
            return Reply(pieces: pieces, dropAfterPieces: dropAfter)
        }

        /// A JSON answer (a tool endpoint's).
        static func json(_ body: String, status: HTTPResponse.Status = .ok) -> Reply {
            Reply(status: status, headers: [("Content-Type", "application/json")], pieces: [Array(body.utf8)])
        }

        /// An error answer with a JSON body.
        static func error(_ status: HTTPResponse.Status, _ body: String, headers: [(String, String)] = []) -> Reply {
            Reply(status: status, headers: [("Content-Type", "application/json")] + headers, pieces: [Array(body.utf8)])
        }
    }

    /// A request the fake got.
    struct Received: Sendable {
        var path: String
        var headers: [String: String]
        var body: JSON
    }

    struct Context: RequestContext {
        var coreContext: CoreRequestContextStorage
        let channel: any Channel
        init(source: ApplicationRequestContextSource) {
            coreContext = .init(source: source)
            channel = source.channel
        }
    }

    private struct State {
        var replies: [Reply] = []
        var received: [Received] = []
        var connectionsClosed = 0
    }

    private let state = Mutex(State())
    private let task = Mutex<Task<Void, any Error>?>(nil)
    private let portValue = Mutex(0)

    /// Starts the fake on a free loopback port.
    static func start() async throws -> FakeProvider {
        let fake = FakeProvider()
        let router = Router(context: Context.self)
        router.post("**") { request, context -> Response in try await fake.answer(request, context) }
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) },
            logger: Harness.quietLogger("fake-provider"))
        fake.task.withLock { $0 = Task { try await app.runService(gracefulShutdownSignals: []) } }
        var iterator = ports.makeAsyncIterator()
        let port = await iterator.next() ?? 0
        fake.portValue.withLock { $0 = port }
        return fake
    }

    /// The base URL clients use: `http://127.0.0.1:<port>`.
    var baseURL: String { "http://127.0.0.1:\(portValue.withLock { $0 })" }

    /// Queues replies, answered in order.
    func enqueue(_ replies: Reply...) {
        state.withLock { $0.replies += replies }
    }

    /// The requests received so far.
    var received: [Received] { state.withLock { $0.received } }

    /// Connections the client closed while a hanging reply was open.
    var connectionsClosed: Int { state.withLock { $0.connectionsClosed } }

    func stop() { task.withLock { $0?.cancel() } }

    private func answer(_ request: Request, _ context: Context) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: 10 << 20)
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        let parsed = (try? JSON.parse(body.readableBytesView)) ?? .null
        let reply = state.withLock { state -> Reply? in
            state.received.append(Received(path: request.uri.path, headers: headers, body: parsed))
            return state.replies.isEmpty ? nil : state.replies.removeFirst()
        }
        guard let reply else {
            return Response(
                status: .internalServerError, body: .init(byteBuffer: ByteBuffer(string: "no reply scripted")))
        }
        var fields = HTTPFields()
        for (name, value) in reply.headers { fields[HTTPField.Name(name)!] = value }
        let channel = context.channel
        return Response(
            status: reply.status, headers: fields,
            body: ResponseBody { writer in
                for piece in reply.pieces {
                    try await writer.write(ByteBuffer(bytes: piece))
                    try await Task.sleep(for: reply.pause)
                }
                if reply.dropAfterPieces {
                    try await channel.close()
                    return
                }
                if reply.hang {
                    // An SSE comment every 50 ms until a write fails: the client has closed the connection.
                    do {
                        while true {
                            try await Task.sleep(for: .milliseconds(50))
                            try await writer.write(ByteBuffer(string: ": still thinking\n\n"))
                        }
                    } catch {
                        self.state.withLock { $0.connectionsClosed += 1 }
                        throw error
                    }
                }
                try await writer.finish(nil)
            })
    }
}
