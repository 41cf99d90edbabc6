//! The committed Kotlin and Swift sources are what the Rust surface generates today.

use std::path::Path;
use std::process::Command;

#[test]
fn generated_kotlin_and_swift_match_the_rust_surface() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fresh = tempfile::tempdir().unwrap();
    let status = Command::new(root.join("bindings/generate.sh"))
        .arg(fresh.path())
        .status()
        .expect("bindings/generate.sh runs");
    assert!(status.success(), "generating the bindings failed");
    for language in ["kotlin", "swift"] {
        let committed = root.join("bindings").join(language).join("generated");
        let generated = fresh.path().join(language).join("generated");
        let diff = Command::new("diff")
            .arg("-r")
            .arg(&committed)
            .arg(&generated)
            .output()
            .expect("diff runs");
        assert!(
            diff.status.success(),
            "bindings/{language}/generated is stale: run bindings/generate.sh\n{}",
            String::from_utf8_lossy(&diff.stdout)
        );
    }
}

/// The foreign config carries every field of the core's (the Rust conversion names each, so a
/// field missing there does not build), and the core's records and enums are exported under
/// the names the apps use.
#[test]
fn the_bindings_carry_what_the_core_exports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kotlin = std::fs::read_to_string(
        root.join("bindings/kotlin/generated/org/asyncoffers/ffi/async_offers.kt"),
    )
    .unwrap();
    let swift = std::fs::read_to_string(root.join("bindings/swift/generated/AsyncOffersFFI.swift"))
        .unwrap();
    for wanted in [
        "var `invoiceRequestTarget`: InvoiceRequestTarget",
        "var `bestBlockHeight`: kotlin.UInt?",
        "enum class InvoiceRequestTarget",
        "data class Offer (",
        "sealed class OfferEvent",
        "sealed class OffersException",
        "var `invoiceConfirmedAt`: java.time.Duration?",
        "InvoiceRefreshFailed(",
    ] {
        assert!(kotlin.contains(wanted), "the Kotlin bindings lack {wanted}");
    }
    for wanted in [
        "public var invoiceRequestTarget: InvoiceRequestTarget",
        "public var bestBlockHeight: UInt32?",
        "public enum InvoiceRequestTarget",
        "public struct Offer",
        "public enum OfferEvent",
        "enum OffersError: Swift.Error",
    ] {
        assert!(swift.contains(wanted), "the Swift bindings lack {wanted}");
    }
}

/// The Android and iOS packages cannot be built here (no Android SDK, no Xcode), so this checks
/// they stay wired to what the Kotlin and Swift tests exercise: the same sources, the native
/// library and C module names `uniffi.toml` sets, and one API level for Gradle and the NDK.
#[test]
fn android_and_ios_packages_ship_the_tested_sources_under_the_configured_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| std::fs::read_to_string(root.join(path)).expect(path);
    let uniffi = read("uniffi.toml");
    let cdylib = quoted_value(&uniffi, "cdylib_name");
    let ffi_module = quoted_value(&uniffi, "ffi_module_name");

    let gradle = read("android/lib/build.gradle.kts");
    let source_dirs = gradle
        .lines()
        .find(|line| line.contains("kotlin.srcDirs("))
        .expect("the Gradle module names its Kotlin sources");
    let source_dirs: Vec<&str> = source_dirs.split('"').skip(1).step_by(2).collect();
    assert_eq!(
        source_dirs.len(),
        2,
        "the Kotlin layer and the generated code"
    );
    for dir in source_dirs {
        let dir = root
            .join("android/lib")
            .join(dir)
            .canonicalize()
            .expect(dir);
        assert!(
            dir.starts_with(root.join("bindings/kotlin")),
            "{}",
            dir.display()
        );
    }
    let generated_kotlin = read("bindings/kotlin/generated/org/asyncoffers/ffi/async_offers.kt");
    assert!(generated_kotlin.contains(&format!("return \"{cdylib}\"")));
    let jni_script = read("android/build-jnilibs.sh");
    assert!(jni_script.contains(&format!("/lib{cdylib}.so")));
    let min_sdk = |text: &str, key: &str| {
        let line = text.lines().find(|line| line.trim_start().starts_with(key));
        let digits = line.expect(key).rsplit(['=', ' ']).next().unwrap();
        digits.parse::<u32>().expect(key)
    };
    assert_eq!(
        min_sdk(&gradle, "minSdk ="),
        min_sdk(&jni_script, "min_sdk=")
    );

    let package = read("ios/Package.swift");
    assert!(package.contains(&format!(
        ".binaryTarget(name: \"{ffi_module}\", path: \"{ffi_module}.xcframework\")"
    )));
    let xcframework_script = read("ios/build-xcframework.sh");
    assert!(xcframework_script.contains(&format!("-output ios/{ffi_module}.xcframework")));
    assert!(
        xcframework_script.contains(&format!("bindings/swift/generated/{ffi_module}.modulemap"))
    );
    for source in [
        "AsyncOffersFFI/AsyncOffersFFI.swift",
        "AsyncOffers/AsyncOffersClient.swift",
    ] {
        let link = root.join("ios/Sources").join(source);
        let target = link.canonicalize().expect(source);
        assert!(
            link.is_symlink() && target.starts_with(root.join("bindings/swift")),
            "{source}"
        );
    }
}

/// The quoted value of `key = "value"` in a TOML file without repeated keys.
fn quoted_value<'a>(toml: &'a str, key: &str) -> &'a str {
    let line = toml
        .lines()
        .find(|line| line.starts_with(&format!("{key} ")));
    line.and_then(|line| line.split('"').nth(1)).expect(key)
}
