//! Writes the fuzzers' seed corpus (`async_offers::testing::fuzz::seed_corpus`) into `fuzz/corpus/`.
//!
//! `cargo run --example fuzz_seeds`

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, name, bytes) in async_offers::testing::fuzz::seed_corpus() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
    }
    Ok(())
}
