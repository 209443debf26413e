// The seed's join-with-timeout program: the parent waits 10 seconds for the
// kid, then cancels them; the kid catches the cancellation and saves.
import Curio

func countdown(_ n: Int) async throws {
    var n = n
    while n > 0 {
        print("T-minus", n)
        try await Curio.sleep(1)
        n -= 1
    }
}

func kid() async throws {
    do {
        print("Building the Millenium Falcon in Minecraft")
        try await Curio.sleep(1000)
    } catch is CancelledError {
        print("Fine. Saving my work.")
    }
}

func parent() async throws {
    let kidTask = try await newTask(kid)
    try await Curio.sleep(5)
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

let kernel = Kernel()
kernel.addTask(parent)
try kernel.run()
