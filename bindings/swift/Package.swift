// swift-tools-version:5.9
// The Swift SDK built from source against `libasync_offers` (Linux, or macOS with the library
// built by cargo): what `bindings/swift/test.sh` tests. Apps on iOS use the package in `ios/`.
import PackageDescription

let package = Package(
    name: "AsyncOffers",
    platforms: [.macOS(.v12), .iOS(.v15)],
    products: [.library(name: "AsyncOffers", targets: ["AsyncOffers"])],
    targets: [
        .systemLibrary(name: "async_offersFFI", path: "linux"),
        .target(
            name: "AsyncOffersFFI",
            dependencies: ["async_offersFFI"],
            path: "generated",
            sources: ["AsyncOffersFFI.swift"]
        ),
        .target(name: "AsyncOffers", dependencies: ["AsyncOffersFFI"]),
        .testTarget(name: "AsyncOffersTests", dependencies: ["AsyncOffers"]),
    ]
)
