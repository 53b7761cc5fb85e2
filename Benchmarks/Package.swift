// swift-tools-version:6.0
//
// Echo-server benchmarks: Swisted vs. raw libuv (C) vs. SwiftNIO, plus our own
// epoll load generator. See README/RESULTS.md; run with `make -C Benchmarks bench`.
//
// Set SWISTED_BENCH_NO_SWISTED=1 to leave out the swisted-echo target (and the
// dependency on the root package), e.g. while the root package does not build.
// It is also left out automatically while ../Package.swift does not exist.
import PackageDescription
import Foundation

let packageDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
let rootManifest = packageDir.deletingLastPathComponent().appendingPathComponent("Package.swift").path
let withSwisted = ProcessInfo.processInfo.environment["SWISTED_BENCH_NO_SWISTED"] == nil
    && FileManager.default.fileExists(atPath: rootManifest)

var dependencies: [Package.Dependency] = [
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
]

var targets: [Target] = [
    // The Swift echo servers' shared command line and stderr output.
    .target(
        name: "EchoServerCommon",
        path: "Sources/EchoServerCommon"
    ),
    // Plain C on libuv: the floor.
    .executableTarget(
        name: "uv-echo",
        path: "Sources/uv-echo",
        linkerSettings: [.linkedLibrary("uv")]
    ),
    // Our own epoll load generator (C, no libuv, no Swift).
    .executableTarget(
        name: "echo-load",
        path: "Sources/echo-load",
        linkerSettings: [.linkedLibrary("m")]
    ),
    // SwiftNIO echo server, as in NIO's EchoServer example.
    .executableTarget(
        name: "nio-echo",
        dependencies: [
            "EchoServerCommon",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ],
        path: "Sources/nio-echo"
    ),
    // SwiftNIO echo written with NIOAsyncChannel (beside swisted-async-echo).
    .executableTarget(
        name: "nio-async-echo",
        dependencies: [
            "EchoServerCommon",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ],
        path: "Sources/nio-async-echo"
    ),
    // NIO's scheduleTask/execute, beside swisted-micro.
    .executableTarget(
        name: "nio-micro",
        dependencies: [
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ],
        path: "Sources/nio-micro"
    ),
]

if withSwisted {
    dependencies.append(.package(name: "swisted", path: ".."))
    targets.append(
        .executableTarget(
            name: "swisted-echo",
            dependencies: ["EchoServerCommon", .product(name: "Swisted", package: "swisted")],
            path: "Sources/swisted-echo"
        )
    )
    // The same echo on the async API (AsyncListener/AsyncConnection on the reactor's executor).
    targets.append(
        .executableTarget(
            name: "swisted-async-echo",
            dependencies: ["EchoServerCommon", .product(name: "Swisted", package: "swisted")],
            path: "Sources/swisted-async-echo"
        )
    )
    // The same echo with its loops isolated to an actor on the reactor's executor.
    targets.append(
        .executableTarget(
            name: "swisted-actor-echo",
            dependencies: ["EchoServerCommon", .product(name: "Swisted", package: "swisted")],
            path: "Sources/swisted-actor-echo"
        )
    )
    // Reactor microbenchmarks: callLater+cancel, callFromThread.
    targets.append(
        .executableTarget(
            name: "swisted-micro",
            dependencies: [.product(name: "Swisted", package: "swisted")],
            path: "Sources/swisted-micro"
        )
    )
}

let package = Package(
    name: "SwistedBenchmarks",
    dependencies: dependencies,
    targets: targets,
    swiftLanguageModes: [.v6]
)
