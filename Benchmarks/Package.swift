// swift-tools-version:6.1
import PackageDescription

// Benchmarks for Curio, in their own package so that the library itself
// depends on nothing. Two ways to run them:
//
//   swift run -c release curio-bench [--quick] [workload ...]
//       Curio vs Swift concurrency vs SwiftNIO, interleaved, in one run,
//       printing a Markdown table of medians and ratios.
//
//   swift package benchmark
//       ordo-one/benchmark's detailed statistics for the Curio workloads.
//
// The echo benchmark (Benchmarks/echo/run.sh, `make bench-echo`) builds
// curio-echo twice: Curio's default trait (io_uring), and, with
// CURIO_BENCH_EPOLL set in the environment, the Epoll trait (in a separate
// scratch path). A path dependency's traits are chosen here, by the
// dependent package, hence the switch.
let curioEpoll = Context.environment["CURIO_BENCH_EPOLL"] != nil

let package = Package(
    name: "CurioBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Curio", path: "..", traits: curioEpoll ? ["Epoll"] : [.defaults]),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        // The HTTP benchmark's Hummingbird 2 server (Benchmarks/http/run.sh).
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.0.0"),
        // The HTTPS benchmark's NIO server (NIOHTTP1 behind NIOSSL).
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.27.0"),
    ],
    targets: [
        .target(name: "CBenchSupport", path: "Sources/CBenchSupport"),
        // The echo benchmark's servers (Benchmarks/echo/README.md).
        .executableTarget(
            name: "curio-echo",
            dependencies: [.product(name: "Curio", package: "Curio")],
            path: "Sources/curio-echo",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "nio-echo",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/nio-echo",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // The HTTP and HTTPS benchmarks' servers (Benchmarks/http/run.sh, `make bench-http`):
        // each serves HTTPS when given a certificate and key.
        .executableTarget(
            name: "curio-http",
            dependencies: [
                .product(name: "Curio", package: "Curio"),
                .product(name: "CurioHTTP", package: "Curio"),
                .product(name: "CurioHTTPS", package: "Curio"),
                .product(name: "CurioTLS", package: "Curio"),
            ],
            path: "Sources/curio-http",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "nio-http",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Sources/nio-http",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "hummingbird-http",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Sources/hummingbird-http",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "curio-bench",
            dependencies: [
                "CBenchSupport",
                .product(name: "Curio", package: "Curio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/curio-bench",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "CurioBenchmarks",
            dependencies: [
                .product(name: "Curio", package: "Curio"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/CurioBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "benchmark"),
            ]
        ),
    ]
)
