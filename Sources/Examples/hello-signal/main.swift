// The seed's "Signals" program: the kid plays until the parent gets a
// SIGHUP (send it with `kill -HUP <pid>` from another terminal).
import Curio
import Glibc

let startEvt = Event()

func countdown(_ n: Int) async throws {
    var n = n
    while n > 0 {
        print("T-minus", n)
        try await Curio.sleep(1)
        n -= 1
    }
}

func kid() async throws {
    print("Can I play?")
    try await startEvt.wait()
    do {
        print("Building the Millenium Falcon in Minecraft")
        try await Curio.sleep(1000)
    } catch is CancelledError {
        print("Fine. Saving my work.")
    }
}

func parent() async throws {
    print("Parent PID", getpid())
    let kidTask = try await newTask(kid)
    try await Curio.sleep(5)
    print("Yes, go play")
    await startEvt.set()

    try await SignalSet(SIGHUP).wait()

    print("Let's go")
    let countTask = try await newTask { try await countdown(10) }
    try await countTask.join()
    print("We're leaving!")
    do {
        try await kidTask.join(timeout: 10)
    } catch is TimeoutError {
        print("I warned you!")
        try await kidTask.cancel()
    }
    print("Leaving!")
}

let kernel = Kernel(withMonitor: true)
kernel.addTask(parent)
try kernel.run()
