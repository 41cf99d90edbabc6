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
