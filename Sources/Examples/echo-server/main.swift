// The seed's echo server, written directly with sockets. The port is the
// seed's 25000 unless given as the first argument (0 picks a free one).
import Curio

func echoServer(_ address: (String, Int)) async throws {
    let sock = try Socket(.inet, .stream)
    try sock.setOption(.reuseAddress, true)
    try sock.bind(address)
    try sock.listen(5)
    print("Server listening at", try sock.localAddress)
    try await sock.closing { sock in
        while true {
            let (client, addr) = try await sock.accept()
            print("Connection from", addr)
            try await newTask { try await echoClient(client) }
        }
    }
}

func echoClient(_ client: Socket) async throws {
    try await client.closing { client in
        while true {
            let data = try await client.recv(1000)
            if data.isEmpty {
                break
            }
            try await client.sendAll(data)
        }
    }
    print("Connection closed")
}

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 25000 : 25000
let kernel = Kernel()
kernel.addTask { try await echoServer(("", port)) }
try kernel.run()
