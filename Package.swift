// swift-tools-version:6.1
import PackageDescription

// Two backends behind one API. The default trait builds io_uring (with an
// epoll fallback chosen at run time when io_uring cannot be set up);
// `swift build --traits Epoll` builds the epoll backend alone and does not
// need liburing at all.
let package = Package(
    name: "Curio",
    products: [
        .library(name: "Curio", targets: ["Curio"]),
        .executable(name: "curio-demo", targets: ["curio-demo"]),
        .executable(name: "curio-monitor", targets: ["curio-monitor"]),
        // TLS over Curio sockets, on the system's OpenSSL 3 (libssl-dev).
        .library(name: "CurioTLS", targets: ["CurioTLS"]),
        // HTTP/1.1 server on Curio streams (docs/HTTP.md).
        .library(name: "CurioHTTP", targets: ["CurioHTTP"]),
        // HTTPServer over CurioTLS: its own product so plain-HTTP users need no OpenSSL.
        .library(name: "CurioHTTPS", targets: ["CurioHTTPS"]),
        // swift-service-lifecycle integration: its own product so the core stays small.
        .library(name: "CurioServiceLifecycle", targets: ["CurioServiceLifecycle"]),
    ],
    traits: [
        .trait(name: "IOUring", description: "io_uring backend (falls back to epoll at run time)"),
        .trait(name: "Epoll", description: "epoll backend only; no liburing needed"),
        .default(enabledTraits: ["IOUring"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        // CurioHTTP's request and response types; without the FoundationURL
        // trait so the server does not pull in Foundation.
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.0.0"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin.git", from: "1.0.0"),
    ],
    targets: [
        .target(
            name: "CCurioKernel",
            path: "CSources/CCurioKernel",
            cSettings: [
                .define("CURIO_EPOLL_ONLY", .when(traits: ["Epoll"])),
                // No unsafeFlags here: a package that depends on Curio by
                // version must be able to build it. The C kernel's warnings
                // (-Wall -Wextra -Werror) are enforced by `make ctest`.
            ],
            linkerSettings: [
                .linkedLibrary("uring", .when(traits: ["IOUring"])),
            ]
        ),
        .target(
            name: "Curio",
            dependencies: [
                "CCurioKernel",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Sources/Curio",
            swiftSettings: [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]
        ),
        // CurioTLS: OpenSSL 3 from the system through a small C shim (the
        // macros Swift cannot import), TLS streams in Swift.
        .target(
            name: "CCurioOpenSSL",
            path: "CSources/CCurioOpenSSL",
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),
        .target(
            name: "CurioTLS",
            dependencies: ["Curio", "CCurioOpenSSL", .product(name: "Logging", package: "swift-log")],
            path: "Sources/CurioTLS",
            swiftSettings: [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]
        ),
        .testTarget(
            name: "CurioTLSTests",
            dependencies: ["CurioTLS", "CurioHTTP", "CurioHTTPS", "Curio", "CurioTestSupport", .product(name: "Logging", package: "swift-log")],
            path: "Tests/CurioTLSTests",
            swiftSettings: [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]
        ),
        .executableTarget(name: "curio-demo", dependencies: ["Curio"], path: "Sources/Examples/curio-demo"),
        .executableTarget(name: "curio-monitor", path: "Sources/Examples/curio-monitor"),
        .executableTarget(name: "hello-countdown", dependencies: ["Curio"], path: "Sources/Examples/hello-countdown"),
        .executableTarget(name: "hello-tasks", dependencies: ["Curio"], path: "Sources/Examples/hello-tasks"),
        .executableTarget(name: "hello-cancel", dependencies: ["Curio"], path: "Sources/Examples/hello-cancel"),
        .executableTarget(name: "hello-event", dependencies: ["Curio"], path: "Sources/Examples/hello-event"),
        .executableTarget(name: "hello-monitor", dependencies: ["Curio"], path: "Sources/Examples/hello-monitor"),
        .executableTarget(name: "hello-hog", dependencies: ["Curio"], path: "Sources/Examples/hello-hog"),
        .executableTarget(name: "hello-process", dependencies: ["Curio"], path: "Sources/Examples/hello-process"),
        .executableTarget(name: "hello-deadlock", dependencies: ["Curio"], path: "Sources/Examples/hello-deadlock"),
        .executableTarget(name: "hello-signal", dependencies: ["Curio"], path: "Sources/Examples/hello-signal"),
        .executableTarget(name: "hello-fib", dependencies: ["Curio"], path: "Sources/Examples/hello-fib"),
        .executableTarget(name: "echo-server", dependencies: ["Curio"], path: "Sources/Examples/echo-server"),
        .executableTarget(name: "echo-socketserver", dependencies: ["Curio"], path: "Sources/Examples/echo-socketserver"),
        .target(
            name: "CurioHTTP",
            dependencies: ["Curio", .product(name: "HTTPTypes", package: "swift-http-types")],
            path: "Sources/CurioHTTP",
            swiftSettings: [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]
        ),
        .target(
            name: "CurioHTTPS",
            dependencies: ["Curio", "CurioHTTP", "CurioTLS", .product(name: "Logging", package: "swift-log")],
            path: "Sources/CurioHTTPS",
            swiftSettings: [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]
        ),
        .testTarget(
            name: "CurioHTTPTests",
            dependencies: ["CurioHTTP", "Curio", "CurioTestSupport", .product(name: "HTTPTypes", package: "swift-http-types")],
            path: "Tests/CurioHTTPTests"
        ),
        // swift-service-lifecycle: a kernel and its servers as a `Service`.
        .target(
            name: "CurioServiceLifecycle",
            dependencies: [
                "Curio",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/CurioServiceLifecycle"
        ),
        .executableTarget(
            name: "curio-service",
            dependencies: [
                "Curio", "CurioServiceLifecycle",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Examples/curio-service"
        ),
        .testTarget(
            name: "CurioServiceLifecycleTests",
            dependencies: [
                "Curio", "CurioServiceLifecycle",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/CurioServiceLifecycleTests"
        ),
        // Threads and bounded waits every test target shares (not a product).
        .target(name: "CurioTestSupport", path: "Tests/CurioTestSupport"),
        .testTarget(
            name: "CurioTests",
            dependencies: [
                "Curio", "CCurioKernel", "CurioTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            path: "Tests/CurioTests"
        ),
    ],
    cLanguageStandard: .gnu11
)
