// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "swisted",
    products: [
        .library(name: "Swisted", targets: ["Swisted"]),
        // In-memory transports, a hand-driven clock and a fake reactor, for
        // testing protocols (yours too) without sockets or real time.
        .library(name: "SwistedTesting", targets: ["SwistedTesting"]),
        // A reactor as a swift-service-lifecycle Service (graceful shutdown);
        // separate so the core library does not depend on service-lifecycle.
        .library(name: "SwistedServiceLifecycle", targets: ["SwistedServiceLifecycle"]),
        .executable(name: "echo-server", targets: ["echo-server"]),
        .executable(name: "echo-client", targets: ["echo-client"]),
        .executable(name: "poetry-server", targets: ["poetry-server"]),
        .executable(name: "get-poetry", targets: ["get-poetry"]),
        .executable(name: "swisted-proxy", targets: ["swisted-proxy"]),
        .executable(name: "swisted-kv", targets: ["swisted-kv"]),
        .executable(name: "swisted-kv-client", targets: ["swisted-kv-client"]),
    ],
    dependencies: [
        // Only the example executables use it.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The library logs what nobody else handles (errors thrown by protocols,
        // delayed calls, Deferreds) through swift-log, so services route it.
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibUV",
            path: "CLibUV",
            pkgConfig: "libuv",
            providers: [.apt(["libuv1-dev"])]
        ),
        .target(name: "Swisted", dependencies: ["CLibUV", .product(name: "Logging", package: "swift-log")]),
        .target(name: "SwistedTesting", dependencies: ["Swisted"]),
        .target(
            name: "SwistedServiceLifecycle",
            dependencies: ["Swisted", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]
        ),
        .executableTarget(
            name: "echo-server",
            dependencies: ["Swisted", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/echo/server"
        ),
        .executableTarget(
            name: "swisted-proxy",
            dependencies: ["Swisted", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/proxy"
        ),
        .executableTarget(
            name: "echo-client",
            dependencies: ["Swisted", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/echo/client"
        ),
        // The poetry example: the protocols and factories in two small
        // libraries (so the tests can drive them), the commands around them.
        .target(name: "PoetryClient", dependencies: ["Swisted"], path: "Examples/poetry/PoetryClient"),
        .target(name: "PoetryServer", dependencies: ["Swisted"], path: "Examples/poetry/PoetryServer"),
        .executableTarget(
            name: "poetry-server",
            dependencies: ["Swisted", "PoetryServer", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/poetry/server"
        ),
        .executableTarget(
            name: "get-poetry",
            dependencies: ["Swisted", "PoetryClient", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/poetry/client"
        ),
        // The async example: a key-value server whose store is an actor on the
        // reactor's executor, run by a ServiceGroup.
        .target(name: "KeyValue", dependencies: ["Swisted"], path: "Examples/kv/KeyValue"),
        .executableTarget(
            name: "swisted-kv",
            dependencies: [
                "Swisted", "KeyValue", "SwistedServiceLifecycle",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Examples/kv/server"
        ),
        .executableTarget(
            name: "swisted-kv-client",
            dependencies: ["Swisted", "KeyValue", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/kv/client"
        ),
        // Runs the UDP multicast and broadcast scenarios inside a private
        // network namespace that UDPMulticastTests create (unshare -n), so no
        // datagram of the test suite reaches a real interface.
        .executableTarget(name: "swisted-netns-check", dependencies: ["Swisted"], path: "Tests/swisted-netns-check"),
        // `make soak`: a Swisted echo server with a control port, and a load
        // driver on raw sockets (no Swisted) that starts it, loads it and
        // checks it ends as it began (Tools/README.md).
        .executableTarget(name: "soak-server", dependencies: ["Swisted"], path: "Tools/soak-server"),
        .executableTarget(name: "soak-driver", path: "Tools/soak-driver"),
        // A server that runs out of file descriptors on purpose (a low
        // RLIMIT_NOFILE), started by EMFILETests as a child process so the
        // limit never touches the test process.
        .executableTarget(name: "swisted-emfile-check", dependencies: ["Swisted"], path: "Tests/swisted-emfile-check"),
        // Swisted's global-enqueue hook in a process where another hook was
        // installed first (the hook is process-wide, installed once): started
        // by WakeUpHookTests as a child process.
        .executableTarget(name: "swisted-hook-check", dependencies: ["Swisted", "CLibUV"], path: "Tests/swisted-hook-check"),
        .testTarget(name: "PoetryTests", dependencies: ["Swisted", "SwistedTesting", "PoetryClient", "PoetryServer"]),
        .testTarget(name: "BasicTests", dependencies: ["Swisted", "SwistedTesting"]),
        .testTarget(name: "SwistedTestingTests", dependencies: ["Swisted", "SwistedTesting"]),
        .testTarget(name: "SwistedTests", dependencies: ["Swisted", .product(name: "InMemoryLogging", package: "swift-log")]),
        .testTarget(name: "ConnectionLifeTests", dependencies: ["Swisted", "SwistedTesting"]),
        .testTarget(
            name: "ServiceLifecycleTests",
            dependencies: [
                "Swisted", "SwistedServiceLifecycle", "KeyValue",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "AsyncTests", dependencies: ["Swisted", "SwistedTesting"]),
        .testTarget(
            name: "DeferredTests",
            dependencies: ["Swisted", "SwistedTesting", .product(name: "InMemoryLogging", package: "swift-log")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
