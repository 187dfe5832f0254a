// swift-tools-version:6.2
import PackageDescription

/// Settings every Swift target shares: Swift 6 mode is the package default; these add the
/// upcoming-feature checks the model server codebases build with.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// The modules a call runs through on the server, and the CLI, also run nonisolated async
/// functions on their caller's executor: a handler's (or bench worker's) task prefers its
/// connection's event loop, and without this every call into another async function asked the
/// runtime, under a lock, whether it may stay there (3.5% of a server's call). The client
/// library keeps the default, which its users' code is written against.
let serverSettings: [SwiftSetting] = strictSettings + [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]

let package = Package(
    name: "passion-rpc",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "PassionClient", targets: ["PassionClient"]),
        .executable(name: "passion-server", targets: ["PassionServer"]),
        .library(name: "PassionServerCommand", targets: ["PassionServerCommand"]),
        .executable(name: "passion", targets: ["PassionCLI"]),
        .executable(name: "protoc-gen-passion", targets: ["protoc-gen-passion"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
    ],
    targets: [
        // C libraries from the system, through pkg-config.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),

        .target(
            name: "PassionWire",
            dependencies: [
                "CZlib",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // Metric helpers the server's modules share; only swift-metrics' API, never an exporter.
        .target(
            name: "PassionMetrics",
            dependencies: [.product(name: "CoreMetrics", package: "swift-metrics")],
            swiftSettings: strictSettings
        ),
        .target(
            name: "PassionTLS",
            dependencies: [
                "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
        // What clients and servers share, and the client: connections, pool, call types.
        .target(
            name: "PassionRPC",
            dependencies: [
                "PassionWire",
                "PassionTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        // The server: connection state machine, router, authentication hook, rate limits.
        .target(
            name: "PassionRPCServer",
            dependencies: [
                "PassionMetrics",
                "PassionRPC",
                "PassionWire",
                "PassionTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: serverSettings
        ),
        .target(
            name: "PassionStore",
            dependencies: [
                "PassionMetrics",
                "CLibPQ",
                "COpenSSL",
                "PassionJSON",
                "PassionRPC",
                "PassionTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // schema.sql: tools/dump-schema's readable schema, for people; the server reads Migrations.
            exclude: ["schema.sql"],
            resources: [.copy("Migrations")],
            swiftSettings: serverSettings
        ),
        // A strict JSON parser (no dependencies): ID tokens, and request JSON in the CLI.
        .target(name: "PassionJSON", swiftSettings: strictSettings),
        // Protobuf JSON mapping driven by descriptors (a server's, or the compiled-in ones).
        .target(
            name: "PassionProtoJSON",
            dependencies: ["PassionJSON", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: strictSettings
        ),
        .target(
            name: "PassionIdentity",
            dependencies: [
                "PassionMetrics",
                "COpenSSL",
                "PassionJSON",
                "PassionRPC",
                "PassionRPCServer",
                "PassionStore",
                "PassionTLS",
                "PassionWire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: serverSettings
        ),
        .target(
            name: "PassionAPI",
            dependencies: [
                "PassionRPC",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["README.md"],
            swiftSettings: strictSettings
        ),
        // Generated server protocols: what a server implements, never built by a client.
        .target(
            name: "PassionServerAPI",
            dependencies: [
                "PassionAPI",
                "PassionRPCServer",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: serverSettings
        ),
        .target(
            name: "PassionClient",
            dependencies: [
                "PassionAPI", "PassionRPC", "PassionTLS", "PassionWire",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "PassionServices",
            dependencies: [
                "PassionMetrics",
                "PassionAPI",
                "PassionIdentity",
                "PassionJSON",
                "PassionRPC",
                "PassionRPCServer",
                "PassionServerAPI",
                "PassionStore",
                "PassionTLS",
                "PassionWire",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: serverSettings
        ),
        // What operators read: the Prometheus exposition and the orchestrators' health probes,
        // on a small HTTP listener apart from the RPC port.
        .target(
            name: "PassionTelemetry",
            dependencies: [
                "PassionRPC",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        // passion-server's command, a library so that Extras/otlp runs the same server with an exporter.
        .target(
            name: "PassionServerCommand",
            dependencies: [
                "PassionAPI",
                "PassionIdentity",
                "PassionStore",
                "PassionServices",
                "PassionRPC",
                "PassionRPCServer",
                "PassionServerAPI",
                "PassionTLS",
                "PassionTelemetry",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "PassionServer",
            dependencies: ["PassionServerCommand"],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "PassionCLI",
            dependencies: [
                "PassionClient",
                "PassionJSON",
                "PassionProtoJSON",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: serverSettings
        ),
        .executableTarget(
            name: "protoc-gen-passion",
            dependencies: [
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "SwiftProtobufPluginLibrary", package: "swift-protobuf"),
            ],
            path: "tools/protoc-gen-passion",
            swiftSettings: strictSettings
        ),

        .executableTarget(
            name: "passion-echo-baseline",
            dependencies: [
                "PassionTLS", "PassionWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "tools/echo-baseline",
            swiftSettings: strictSettings
        ),

        // README's "Using the client library", compiled so that it cannot rot.
        .executableTarget(
            name: "passion-client-example",
            dependencies: ["PassionClient"],
            path: "Examples/client",
            swiftSettings: strictSettings
        ),

        // A libFuzzer target over the server connection's state machine (tools/fuzz builds it with
        // -DFUZZING and the fuzzer sanitizer); otherwise it replays the inputs it is given.
        .executableTarget(
            name: "passion-fuzz-server",
            dependencies: [
                "PassionRPC", "PassionRPCServer", "PassionWire",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "tools/fuzz-server",
            exclude: ["corpus"],
            swiftSettings: strictSettings
        ),

        .executableTarget(
            name: "passion-store-bench",
            dependencies: [
                "PassionStore",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "tools/store-bench",
            swiftSettings: strictSettings
        ),

        // Shared by the test targets: the test run's PostgreSQL cluster, certificates, a server.
        .target(
            name: "PassionTestSupport",
            dependencies: [
                "PassionStore", "PassionRPC", "PassionRPCServer", "PassionTLS", "PassionAPI", "PassionServerAPI",
                "PassionServices", "PassionClient", "PassionIdentity",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/PassionTestSupport",
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "PassionWireTests",
            dependencies: ["PassionWire", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "PassionStoreTests",
            dependencies: [
                "PassionJSON", "PassionStore", "PassionRPC", "PassionRPCServer", "PassionTestSupport",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "PassionRPCTests",
            dependencies: [
                "PassionRPC", "PassionRPCServer", "PassionTLS", "PassionWire", "PassionAPI", "PassionServerAPI", "PassionServices",
                "PassionClient", "PassionTestSupport", "PassionStore", "PassionProtoJSON", "PassionIdentity", "PassionCLI",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "PassionIdentityTests",
            dependencies: [
                "COpenSSL", "PassionIdentity", "PassionJSON", "PassionServices", "PassionStore", "PassionRPC", "PassionRPCServer", "PassionClient",
                "PassionTestSupport", "PassionTLS", "PassionWire",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "PassionGamificationTests",
            dependencies: [
                "PassionIdentity", "PassionServices", "PassionStore", "PassionRPC", "PassionRPCServer", "PassionServerAPI",
                "PassionClient", "PassionTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "PassionContentTests",
            dependencies: [
                "PassionIdentity", "PassionServices", "PassionStore", "PassionRPC", "PassionRPCServer", "PassionServerAPI",
                "PassionClient", "PassionTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(
            name: "PassionTelemetryTests",
            dependencies: [
                "PassionIdentity", "PassionServices", "PassionStore", "PassionRPC", "PassionRPCServer", "PassionClient",
                "PassionTelemetry", "PassionTestSupport", "PassionTLS",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
