// The seed's "Tasks" program with the monitor on: after "We're leaving!"
// it hangs (the kid sleeps for 1000 seconds); press Ctrl-C for the monitor,
// `ps` to see why, `where ID` to see where, `cancel ID` to end the kid.
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
    print("Building the Millenium Falcon in Minecraft")
    try await Curio.sleep(1000)
}

func parent() async throws {
    let kidTask = try await newTask(kid)
    try await Curio.sleep(5)
    print("Let's go")
    let countTask = try await newTask { try await countdown(10) }
    try await countTask.join()
    print("We're leaving!")
    try await kidTask.join()
    print("Leaving!")
}

let kernel = Kernel(withMonitor: true)
kernel.addTask(parent)
try kernel.run()
