// Two tasks take two locks in opposite orders and wait for each other for
// ever. Curio notices that nothing can wake them and says so on stderr;
// with the monitor on you can still cancel one of them.
import Curio

let forks = (Lock(), Lock())

func philosopher(_ name: String, _ first: Lock, _ second: Lock) async throws {
    try await first.acquire()
    try await Curio.sleep(0.1)           // long enough for the other to take its first fork
    print(name, "waits for the other fork")
    try await second.acquire()
    print(name, "eats")
}

func dinner() async throws {
    let a = try await spawn(name: "plato") { try await philosopher("plato", forks.0, forks.1) }
    let b = try await spawn(name: "kant") { try await philosopher("kant", forks.1, forks.0) }
    try await a.join()
    try await b.join()
}

let kernel = Kernel(withMonitor: true)
kernel.addTask(dinner)
try kernel.run()
