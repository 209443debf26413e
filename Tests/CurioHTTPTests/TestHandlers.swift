// Handlers the end-to-end tests share.
import Curio
import CurioHTTP
import HTTPTypes
import Synchronization

enum TestHandlers {
    /// Answers "hello" for GET, and for POST/PUT echoes the body with its
    /// length and trailers in headers; "/stream" streams a chunked body.
    static let echo: HTTPHandler = { request in
        switch request.path {
        case "/stream":
            return HTTPServerResponse(status: .ok, body: .stream { writer in
                for i in 0..<5 { try await writer.write("part \(i)\n") }
                writer.trailers = [HTTPField.Name("X-Parts")!: "5"]
            })
        case "/no-content":
            return HTTPServerResponse(status: .noContent)
        default:
            break
        }
        if request.method == .post || request.method == .put {
            let body = try await request.body.collect(upTo: 1 << 22)
            var fields: HTTPFields = [HTTPField.Name("X-Body-Length")!: "\(body.count)"]
            if let t = request.body.trailers, let v = t[HTTPField.Name("X-Trailer")!] { fields[HTTPField.Name("X-Got-Trailer")!] = v }
            return HTTPServerResponse(status: .ok, headerFields: fields, body: .bytes(body))
        }
        return HTTPServerResponse(status: .ok, headerFields: [.contentType: "text/plain"],
                                  body: .string("hello \(request.path)\n"))
    }
}

/// What the server saw, for tests that count connections or requests.
final class Seen: Sendable {
    private let state = Mutex<[String]>([])
    func add(_ s: String) { state.withLock { $0.append(s) } }
    var all: [String] { state.withLock { $0 } }
}
