// The seed's "Number Crunching" program: the kid sums Fibonacci numbers
// with an exponential algorithm, on worker threads through runCPUBound, so
// the kernel stays responsive: signals and the monitor still work.
import Curio
import Glibc

let startEvt = Event()

func fib(_ n: Int) -> Int {
    if n <= 2 {
        return 1
    } else {
        return fib(n - 1) + fib(n - 2)
    }
}

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
        var total = 0
        for n in 0..<50 {
            total += try await runCPUBound { fib(n) }
        }
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
