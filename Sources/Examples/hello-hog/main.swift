// The seed's first "Number Crunching" kid: it computes Fibonacci numbers
// on the kernel thread and never blocks, so every other task stalls. In
// curio the monitor could not answer then; here it does, names the task,
// and shows the kernel thread's live stack.
import Curio

let startEvt = Event()

func fib(_ n: Int) -> Int {
    if n <= 2 {
        return 1
    } else {
        return fib(n - 1) + fib(n - 2)
    }
}

func kid() async throws {
    print("Can I play?")
    try await startEvt.wait()
    // No blocking call below, so no cancellation can reach it either.
    print("Building the Millenium Falcon in Minecraft")
    var total = 0
    for n in 0..<50 {
        total += fib(n)
    }
}

func parent() async throws {
    let kidTask = try await newTask(kid)
    try await Curio.sleep(1)
    print("Yes, go play")
    await startEvt.set()
    try await Curio.sleep(5)
    print("Let's go")
    try await kidTask.cancel()
    print("Leaving!")
}

let kernel = Kernel(withMonitor: true)
kernel.addTask(parent)
try kernel.run()
