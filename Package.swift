// swift-tools-version:6.2
import PackageDescription

// CI builds with every warning as an error (`CI=true`); local builds only warn.
let warnings: [SwiftSetting] = Context.environment["CI"] == "true" ? [.treatAllWarnings(as: .error)] : []

let strict: [SwiftSetting] =
    [
        .enableUpcomingFeature("InternalImportsByDefault"),
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("MemberImportVisibility"),
    ] + warnings

let package = Package(
    name: "Ledgerflow",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ledgerflow", targets: ["ledgerflow"]),
        .executable(name: "ledgerflow-bench", targets: ["LedgerBench"]),
        .executable(name: "ledgerflow-chaos", targets: ["LedgerChaos"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // OTLP/HTTP span export only: the default traits would add gRPC (grpc-swift, HTTP/2) for nothing.
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // C libraries, reached through system-library targets.
        .systemLibrary(name: "CNATS", path: "Sources/CNATS", pkgConfig: "libnats", providers: [.apt(["libnats-dev"])]),
        .systemLibrary(name: "CLMDB", path: "Sources/CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),

        // SHA-256 blocks with the x86 SHA extensions, for LedgerCore's SHA256 when the CPU has them (the log's hash
        // chain hashes every appended event); no I/O, no library.
        .target(name: "CSHA256", path: "Sources/CSHA256"),

        // Pure domain: events, envelope codec, flow definitions, templates, the run fold and decider. No I/O.
        .target(name: "LedgerCore", dependencies: ["CSHA256"], swiftSettings: strict),
        // Read models as pure folds over the log (run status, flow versions, dedup).
        .target(name: "LedgerProjections", dependencies: ["LedgerCore"], path: "projections", swiftSettings: strict),
        // Adapters: the only targets that import the C libraries.
        .target(
            name: "LedgerNATS",
            dependencies: ["CNATS", "LedgerCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .target(name: "LedgerLMDB", dependencies: ["CLMDB"], swiftSettings: strict),
        // The ledger (log + projectors) and the engine.
        .target(
            name: "LedgerEngine",
            dependencies: [
                "LedgerCore", "LedgerProjections", "LedgerNATS", "LedgerLMDB",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strict),
        // Stand-ins for the world outside, never part of the engine: a local nats-server launcher and the calendar
        // and discovery simulators (each with a NATS connection of its own). For `ledgerflow dev`, tests, benchmarks.
        .target(
            name: "LedgerDevServices",
            dependencies: [
                "LedgerCore", "LedgerNATS",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        .target(
            name: "LedgerAPI",
            dependencies: [
                "LedgerCore", "LedgerProjections", "LedgerEngine",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            // The OpenAPI document, compiled into the binary (`PackageResources.openapi_json`): served at
            // /openapi.json with no bundle to find at run time.
            resources: [.embedInCode("Resources/openapi.json")],
            swiftSettings: strict),
        .executableTarget(
            name: "ledgerflow",
            dependencies: [
                "LedgerCore", "LedgerProjections", "LedgerEngine", "LedgerAPI", "LedgerDevServices",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strict),
        // The benchmarks: each figure beside its raw ceiling, measured with cnats directly (hence CNATS).
        .executableTarget(
            name: "LedgerBench",
            dependencies: [
                "CNATS", "LedgerCore", "LedgerEngine", "LedgerNATS", "LedgerLMDB",
                "LedgerDevServices",
                "LedgerTestSupport",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "tools/LedgerBench",
            swiftSettings: strict),
        // The chaos harness (tools/chaos): workers killed, nats-server restarted and paused under load; its verdict
        // is a pure function of what it observed (ChaosAudit), which the tests feed made-up observations.
        .target(name: "ChaosAudit", path: "tools/ChaosAudit", swiftSettings: strict),
        .executableTarget(
            name: "LedgerChaos",
            dependencies: [
                "ChaosAudit", "LedgerCore", "LedgerProjections", "LedgerNATS", "LedgerEngine", "LedgerDevServices",
                "LedgerTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "tools/LedgerChaos",
            swiftSettings: strict),

        // What the test targets and the benchmarks share: the test stack on one nats-server per process, the HTTP
        // client, the `ledgerflow serve` launcher, a manual clock and the example flows.
        .target(
            name: "LedgerTestSupport",
            dependencies: [
                "LedgerCore", "LedgerNATS", "LedgerLMDB", "LedgerEngine", "LedgerAPI", "LedgerDevServices",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/LedgerTestSupport",
            swiftSettings: strict),

        // One test target per source target.
        .testTarget(
            name: "LedgerCoreTests", dependencies: ["LedgerCore", "LedgerProjections"], exclude: ["Fixtures"],
            swiftSettings: strict),
        .testTarget(
            name: "LedgerProjectionsTests", dependencies: ["LedgerCore", "LedgerProjections"], swiftSettings: strict),
        .testTarget(
            name: "LedgerNATSTests",
            dependencies: ["LedgerCore", "LedgerNATS", "LedgerEngine", "LedgerDevServices", "LedgerTestSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "LedgerEngineTests",
            dependencies: [
                "LedgerCore", "LedgerProjections", "LedgerNATS", "LedgerLMDB", "LedgerEngine", "LedgerDevServices",
                "LedgerTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "LedgerAPITests",
            dependencies: [
                "LedgerCore", "LedgerProjections", "LedgerNATS", "LedgerEngine", "LedgerAPI", "LedgerDevServices",
                "LedgerTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "LedgerflowTests",
            dependencies: [
                "ChaosAudit", "LedgerCore", "LedgerNATS", "LedgerEngine", "LedgerDevServices", "LedgerProjections",
                "LedgerTestSupport",
            ],
            swiftSettings: strict),
    ]
)
