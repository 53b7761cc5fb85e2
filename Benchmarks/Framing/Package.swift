// swift-tools-version:6.1
//
// Framing throughput: Swisted's LineReceiver and Int32StringReceiver vs.
// SwiftNIO's LineBasedFrameDecoder and LengthFieldBasedFrameDecoder
// (swift-nio-extras), on the same bytes. Run with `make -C Benchmarks/Framing`.
import PackageDescription

let package = Package(
    name: "framing-bench",
    dependencies: [
        .package(name: "swisted", path: "../.."),
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", exact: "1.35.2"),
    ],
    targets: [
        .executableTarget(
            name: "framing-bench",
            dependencies: [
                .product(name: "Swisted", package: "swisted"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
