// curio-bench: Curio against Swift's own concurrency (default executor) and
// SwiftNIO's event loop, in one run, interleaved round-robin.
//
//   swift run -c release curio-bench [--quick] [--rounds N] [workload ...]
//
// Workloads: switch spawn queue event lock sleep (default: all).
// BENCH_ROUNDS sets the rounds (default 5). Progress goes to stderr, the
// Markdown table to stdout.

#if canImport(Glibc)
import Glibc
#endif

let options: Options
do {
    options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
    log("curio-bench: \(error)\n\n\(Options.usage)")
    exit(2)
}

if options.contenders.contains(.curio) {
    log("Curio backend: \(CurioWorkloads.backend)")
}
let rows = runAll(options)
report(rows, options)
if options.contenders.contains(.curio) {
    print("Curio backend: \(CurioWorkloads.backend). Swift: default executor. NIO: MultiThreadedEventLoopGroup(numberOfThreads: 1).")
}
try? NIOWorkloads.group.syncShutdownGracefully()
