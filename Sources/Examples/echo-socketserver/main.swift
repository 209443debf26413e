// The seed's echo server on the higher-level socketserver interface. The
// port is the seed's 25000 unless given as the first argument (0: any).
import Curio

class EchoHandler: StreamRequestHandler {
    override func handle() async throws {
        print("Connection from", clientAddress)
        for try await line in rfile {
            try await wfile.write(line)
        }
        print("Connection closed")
    }
}

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 25000 : 25000
let serv = try TCPServer(("", port), EchoHandler.self)
print("Server listening at", try serv.serverAddress)
let kernel = Kernel()
kernel.addTask { try await serv.serveForever() }
try kernel.run()
