import Curio
import HTTPTypes
#if canImport(Glibc)
import Glibc
#endif

/// One HTTP/1.1 connection: parses requests from the stream, runs the
/// handler for each in turn, writes the responses in order, and closes as
/// RFC 9112 says. Everything happens in the connection's own Curio task.
final class HTTPConnection: @unchecked Sendable {
    // Unchecked: the connection belongs to one Curio task (its kernel's
    // thread); request bodies and body writers that reference it are only
    // used from that task while their request is handled.
    let stream: SocketStream
    let config: HTTPServerConfiguration
    let handler: HTTPHandler
    let remoteAddress: SocketAddress?
    /// Strong: the registry drops the connection when it ends, which breaks the cycle.
    var registry: ConnectionRegistry?

    private let input: ReadBuffer
    /// Response bytes not yet sent: responses to pipelined requests gather
    /// here and leave in one send.
    private var out: [UInt8] = []
    private var scanner = HeadScanner()
    private var headDeadline: Double?
    private var dateCache = DateCache()
    private let serverLine: [UInt8]?
    private var peerClosed = false

    /// The connection's task, for a drain to cancel while it is idle.
    var task: AnyCurioTask?
    /// True while waiting for the first byte of a request.
    private(set) var idle = false

    // The body of the request being handled.
    private enum BodyState {
        case done
        case length(remaining: Int)
        case chunked
    }
    private var generation = 0
    private var bodyState = BodyState.done
    private var chunked = ChunkedDecoder()
    private var trailers: HTTPFields?
    private var bodyError: HTTPProtocolError?
    private var pendingContinue = false
    private var version = HTTPVersion.http1_1

    init(stream: SocketStream, configuration: HTTPServerConfiguration, handler: @escaping HTTPHandler,
         remoteAddress: SocketAddress?) {
        self.stream = stream
        self.config = configuration
        self.handler = handler
        self.remoteAddress = remoteAddress
        let headRoom = configuration.maxRequestLineLength + configuration.maxHeaderBytes + 64
        input = ReadBuffer(initialCapacity: Swift.min(configuration.readChunkSize, 4096),
                           maxCapacity: Swift.max(headRoom, configuration.maxChunkLineLength + 64) + configuration.readChunkSize)
        serverLine = configuration.serverName.map { Array("Server: \($0)\r\n".utf8) }
        out.reserveCapacity(1024)
    }

    /// Serves requests until the client or the server ends the connection,
    /// then closes the stream. Never throws: a client's failure is the end
    /// of its connection only.
    func run() async {
        task = try? await currentTask()
        var graceful = false
        do {
            graceful = try await serveRequests()
        } catch {
            // Cancelled (a drain, the server stopping), reset by the peer,
            // or a write timeout: nothing more can be said on this connection.
        }
        if graceful { await lingeringClose() }
        stream.close()
    }

    private var draining: Bool { registry?.draining ?? false }

    // MARK: Requests

    /// The request loop → true when the server chose to close (the close
    /// is then graceful), false when the client went away.
    private func serveRequests() async throws -> Bool {
        while true {
            if !scanner.started { skipEmptyLines() }
            let headLength: Int?
            do {
                headLength = try scanner.scan(input.unread, config)
            } catch {
                return try await refuse(error)
            }
            guard let headLength else {
                if !out.isEmpty { try await flush() }
                if input.isEmpty && !scanner.started {
                    if draining { return true }
                    idle = true
                    let got: Bool
                    do {
                        defer { idle = false }
                        got = try await curioTimeoutAfter(config.idleTimeout) { try await receive() }
                    } catch is TaskTimeout {
                        return true
                    }
                    if !got { return false }
                    headDeadline = clock() + config.headerTimeout
                } else {
                    if headDeadline == nil { headDeadline = clock() + config.headerTimeout }
                    let got: Bool
                    do {
                        got = try await curioTimeoutAt(headDeadline!) { try await receive() }
                    } catch is TaskTimeout {
                        return try await refuse(HTTPProtocolError(
                            .requestTimeout, "the request head did not arrive within \(config.headerTimeout) s"))
                    }
                    if !got { return false }
                }
                continue
            }
            let head: ParsedHead
            do {
                head = try HeadParser.parse(UnsafeRawBufferPointer(rebasing: input.unread[0..<headLength]), config)
            } catch {
                return try await refuse(error)
            }
            input.consume(headLength)
            scanner.reset()
            headDeadline = nil
            if try await !handle(head) { return true }
            if out.count >= config.pipelineBatchBytes { try await flush() }
        }
    }

    /// Empty lines before a request line are ignored (RFC 9112 §2.2).
    private func skipEmptyLines() {
        while input.count >= 2 {
            let b = input.unread
            guard b[0] == ByteClass.cr && b[1] == ByteClass.lf else { return }
            input.consume(2)
        }
    }

    /// One receive into the input buffer → false at end of stream.
    private func receive() async throws -> Bool {
        guard let space = input.spaceForReceive(wanted: config.readChunkSize) else {
            throw HTTPProtocolError(.requestHeaderFieldsTooLarge, "the request does not fit the server's buffer")
        }
        let n = try await stream.read(into: space)
        if n == 0 {
            peerClosed = true
            return false
        }
        input.received(n)
        return true
    }

    /// Answers a request the server will not handle and ends the connection.
    private func refuse(_ error: HTTPProtocolError) async throws -> Bool {
        let response = ResponseEncoder.errorResponse(error.status, error.reason)
        ResponseEncoder.appendHead(response.head, body: .length(bodyCount(response)), connection: ResponseEncoder.connectionClose,
                                   date: dateCache.current(), server: serverLine, into: &out)
        if case .bytes(let b) = response.body.storage { out.append(contentsOf: b) }
        try await flush()
        return true
    }

    private func bodyCount(_ r: HTTPServerResponse) -> Int {
        if case .bytes(let b) = r.body.storage { return b.count }
        return 0
    }

    /// Handles one parsed request → false when the connection must close.
    private func handle(_ head: ParsedHead) async throws -> Bool {
        generation &+= 1
        version = head.version
        bodyError = nil
        trailers = nil
        pendingContinue = head.expectContinue
        var declared: Int?
        switch head.framing {
        case .none:
            bodyState = .done
        case .length(let n):
            bodyState = .length(remaining: n)
            declared = n
        case .chunked:
            bodyState = .chunked
            chunked = ChunkedDecoder()
        }
        let body = head.framing == .none
            ? HTTPRequestBody.none
            : HTTPRequestBody(connection: self, generation: generation, declaredLength: declared)
        let request = HTTPServerRequest(head: head.request, body: body, version: head.version, remoteAddress: remoteAddress)
        let isHead = head.request.method == .head

        var close = !head.keepAlive
        var response: HTTPServerResponse
        do {
            response = try await handler(request)
        } catch let e as HTTPProtocolError {
            response = ResponseEncoder.errorResponse(e.status, e.reason)
            close = true
        } catch let e as HTTPBodyTooLarge {
            response = ResponseEncoder.errorResponse(.contentTooLarge, e.description)
            close = true
        } catch let e where bodyError != nil && (e is CancelledError || e is SocketError) {
            // The body read failed (stalled client, reset) and the handler
            // passed that on.
            response = ResponseEncoder.errorResponse(bodyError!.status, bodyError!.reason)
            close = true
        } catch let e as CancelledError {
            throw e
        } catch {
            response = ResponseEncoder.errorResponse(.internalServerError, "the handler failed")
            close = true
        }
        if response.head.status.code < 200 {
            // An interim status cannot end an exchange; the client would wait forever.
            response = ResponseEncoder.errorResponse(
                .internalServerError, "the handler returned the informational status \(response.head.status.code)")
            close = true
        }
        if bodyError != nil { close = true }
        if !bodyComplete() { close = true }
        if draining { close = true }
        if !close, wantsClose(response.head) { close = true }
        try await write(response, isHead: isHead, close: &close)
        generation &+= 1  // the body of this request can no longer be read
        if close {
            try await flush()
            return false
        }
        return true
    }

    /// True when the request body has been read to its end, or what is
    /// left of it is buffered already and can be skipped without waiting.
    private func bodyComplete() -> Bool {
        switch bodyState {
        case .done:
            return bodyError == nil
        case .length(let remaining):
            guard !pendingContinue || remaining <= input.count else { return false }
            if remaining <= input.count {
                input.consume(remaining)
                bodyState = .done
                return true
            }
            return false
        case .chunked:
            return false
        }
    }

    private func wantsClose(_ head: HTTPResponse) -> Bool {
        for field in head.headerFields where field.name == .connection {
            if field.value.lowercased().contains("close") { return true }
        }
        return false
    }

    // MARK: Responses

    private func write(_ response: HTTPServerResponse, isHead: Bool, close: inout Bool) async throws {
        let code = response.head.status.code
        let bodyAllowed = code >= 200 && code != 204 && code != 304
        let date = dateCache.current()
        switch response.body.storage {
        case .empty:
            ResponseEncoder.appendHead(response.head, body: bodyAllowed ? .length(0) : .none,
                                       connection: connectionField(close), date: date, server: serverLine, into: &out)
        case .bytes(let bytes):
            ResponseEncoder.appendHead(response.head, body: bodyAllowed ? .length(bytes.count) : .none,
                                       connection: connectionField(close), date: date, server: serverLine, into: &out)
            if bodyAllowed && !isHead {
                if bytes.count < Self.copyLimit {
                    out.append(contentsOf: bytes)
                } else {
                    // A large body leaves from the handler's own array, uncopied.
                    try await flush()
                    try await send(bytes)
                }
            }
        case .stream(let produce):
            let declared = declaredLength(response.head)
            let framing: HTTPResponseBodyWriter.Framing
            let header: ResponseEncoder.BodyHeader
            if !bodyAllowed {
                (framing, header) = (.discard, .none)
            } else if let n = declared {
                (framing, header) = (isHead ? .discard : .length(n), .length(n))
            } else if isHead {
                (framing, header) = (.discard, .none)
            } else if version == .http1_1 {
                (framing, header) = (.chunked, .chunked)
            } else {
                close = true
                (framing, header) = (.untilClose, .none)
            }
            let headStart = out.count
            ResponseEncoder.appendHead(response.head, body: header, connection: connectionField(close),
                                       date: date, server: serverLine, into: &out)
            let writer = HTTPResponseBodyWriter(connection: self, framing: framing)
            headSent = false
            do {
                try await produce(writer)
                writer.finished = true
            } catch let e as CancelledError where bodyError == nil {
                writer.finished = true
                throw e
            } catch {
                writer.finished = true
                close = true
                if !headSent {
                    // Nothing of this response has left: answer 500 instead.
                    out.removeSubrange(headStart...)
                    let failure = ResponseEncoder.errorResponse(.internalServerError, "the response body failed")
                    ResponseEncoder.appendHead(failure.head, body: .length(bodyCount(failure)),
                                               connection: ResponseEncoder.connectionClose, date: date,
                                               server: serverLine, into: &out)
                    if case .bytes(let b) = failure.body.storage { out.append(contentsOf: b) }
                }
                // Otherwise the client sees the body cut short, which is
                // all HTTP/1.1 can say about a failure half-way.
                return
            }
            switch framing {
            case .chunked:
                out.append(contentsOf: ResponseEncoder.lastChunk)
                ResponseEncoder.appendTrailers(writer.trailers, into: &out)
            case .length(let n) where writer.written != n:
                close = true  // short body: the client will see it truncated
            default:
                break
            }
        }
    }

    /// Set once any byte of the current response's head has been sent.
    private var headSent = false

    private func connectionField(_ close: Bool) -> [UInt8]? {
        if close { return ResponseEncoder.connectionClose }
        return version == .http1_0 ? ResponseEncoder.connectionKeepAlive : nil
    }

    private func declaredLength(_ head: HTTPResponse) -> Int? {
        guard let v = head.headerFields[.contentLength], let n = Int(v), n >= 0 else { return nil }
        return n
    }

    /// Sends one part of a streamed body (framed as a chunk if `chunked`).
    func writeBodyPart(_ bytes: [UInt8], chunked: Bool) async throws {
        if chunked {
            ResponseEncoder.appendHex(bytes.count, into: &out)
            out.append(contentsOf: ResponseEncoder.crlf)
        }
        if bytes.count < Self.copyLimit {
            out.append(contentsOf: bytes)
        } else {
            try await flush()
            try await send(bytes)
        }
        if chunked { out.append(contentsOf: ResponseEncoder.crlf) }
        try await flush()
    }

    /// Bodies from this size on are sent from their own array rather than
    /// copied into the output buffer.
    static let copyLimit = 16384

    /// Sends what the output buffer holds.
    func flush() async throws {
        guard !out.isEmpty else { return }
        try await send(out)
        if out.capacity > 4 * Self.copyLimit {
            // A burst of pipelined responses must not pin its memory for the
            // connection's life.
            out = []
            out.reserveCapacity(1024)
        } else {
            out.removeAll(keepingCapacity: true)
        }
    }

    private func send(_ bytes: [UInt8]) async throws {
        headSent = true
        try await curioTimeoutAfter(config.writeTimeout) { try await stream.write(bytes) }
    }

    // MARK: The request body

    func nextBodyChunk(generation g: Int) async throws -> [UInt8]? {
        guard g == generation else {
            throw CurioUsageError(.invalidArgument, "a request body was read after its response was sent")
        }
        if let e = bodyError { throw e }
        if pendingContinue {
            pendingContinue = false
            out.append(contentsOf: ResponseEncoder.continueLine)
            try await flush()
            headSent = false
        }
        switch bodyState {
        case .done:
            return nil
        case .length(let remaining):
            if input.isEmpty { try await receiveBody() }
            let n = Swift.min(remaining, input.count)
            bodyState = n == remaining ? .done : .length(remaining: remaining - n)
            return input.take(n)
        case .chunked:
            while true {
                let step: ChunkedDecoder.Step
                do {
                    step = try chunked.step(input.unread, config)
                } catch {
                    bodyError = error
                    throw error
                }
                switch step {
                case .needMore:
                    try await receiveBody()
                case .skip(let n):
                    input.consume(n)
                case .data(let n):
                    return input.take(n)
                case .end(let n):
                    input.consume(n)
                    trailers = chunked.trailers
                    bodyState = .done
                    return nil
                }
            }
        }
    }

    func bodyTrailers(generation g: Int) -> HTTPFields? {
        g == generation ? trailers : nil
    }

    /// Receives more of a body; a stall or an early end is the body's error.
    private func receiveBody() async throws {
        let got: Bool
        do {
            got = try await curioTimeoutAfter(config.bodyReadTimeout) { try await receive() }
        } catch is TaskTimeout {
            let e = HTTPProtocolError(.requestTimeout, "the request body stalled for \(config.bodyReadTimeout) s")
            bodyError = e
            throw e
        } catch let e as HTTPProtocolError {
            bodyError = e
            throw e
        }
        if !got {
            let e = HTTPProtocolError(.badRequest, "the connection closed before the request body ended")
            bodyError = e
            throw e
        }
    }

    // MARK: Closing

    /// RFC 9112 §9.6: after the last response, stop sending, then read
    /// (and drop) what the client still sends for a moment, so that its
    /// unread bytes do not make the kernel reset the connection and destroy
    /// the response before the client has read it.
    private func lingeringClose() async {
        guard !peerClosed, let socket = stream.socket else { return }
        try? socket.shutdown(.write)
        var dropped = 0
        _ = try? await curioIgnoreAfter(config.lingerTimeout) {
            while dropped < 1 << 20 {
                input.consume(input.count)
                guard try await receive() else { return }
                dropped += input.count
            }
        }
    }
}
