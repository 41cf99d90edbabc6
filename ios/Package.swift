// swift-tools-version:5.9
// The Swift SDK for apps: the `AsyncOffers` layer and the UniFFI-generated `AsyncOffersFFI` (both
// linked from ../bindings/swift, where they are tested on Linux) over an XCFramework of the Rust
// library for iOS devices, the iOS simulator and macOS. Build it first: ios/build-xcframework.sh
import PackageDescription

let package = Package(
    name: "AsyncOffers",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [.library(name: "AsyncOffers", targets: ["AsyncOffers"])],
    targets: [
        // libasync_offers.a with the C header and module map the generated Swift imports.
        .binaryTarget(name: "async_offersFFI", path: "async_offersFFI.xcframework"),
        .target(
            name: "AsyncOffersFFI",
            dependencies: ["async_offersFFI"],
            path: "Sources/AsyncOffersFFI",
            // getrandom (through LDK) draws entropy with SecRandomCopyBytes.
            linkerSettings: [.linkedFramework("Security")]
        ),
        .target(name: "AsyncOffers", dependencies: ["AsyncOffersFFI"], path: "Sources/AsyncOffers"),
    ]
)
