// swift-tools-version:6.1
import PackageDescription

// passion-server with an OTLP/HTTP span exporter (swift-otel). A package of its own, so that the
// exporter's dependencies (AsyncHTTPClient, swift-nio-ssl's BoringSSL, grpc-free OTLP protobufs:
// several minutes of build on two cores) are built only by those who deploy it. `.ci/run` builds
// it and `tools/test-otlp` sends it a traced call.
let package = Package(
    name: "passion-otlp",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "passion-server-otlp", targets: ["PassionServerOTLP"])
    ],
    dependencies: [
        .package(name: "passion-rpc", path: "../.."),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        .executableTarget(
            name: "PassionServerOTLP",
            dependencies: [
                .product(name: "PassionServerCommand", package: "passion-rpc"),
                .product(name: "OTel", package: "swift-otel"),
            ],
            swiftSettings: [.enableUpcomingFeature("ExistentialAny"), .enableUpcomingFeature("MemberImportVisibility")]
        )
    ]
)
