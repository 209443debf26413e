// The seed's first program: a countdown while you wait for the kid's shoes.
import Curio

func countdown(_ n: Int) async throws {
    var n = n
    while n > 0 {
        print("T-minus", n)
        try await Curio.sleep(1)
        n -= 1
    }
}

let kernel = Kernel()
kernel.addTask { try await countdown(10) }
try kernel.run()
