//! `uniffi-bindgen`: generates the Kotlin and Swift sources from the built library
//! (see `bindings/generate.sh`). Pinned with the `uniffi` the scaffolding was built with.

fn main() {
    uniffi::uniffi_bindgen_main()
}
