//! The fuzz targets' corpus (`fuzz/corpus/`, seeds and whatever fuzzing found worth keeping),
//! replayed on every test run: each input must run through without breaking an invariant.

use std::path::Path;

use async_offers::testing::fuzz::{decode_record, protocol_operations, seed_corpus};
use async_offers::OfferState;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    assert!(!inputs.is_empty(), "{} is empty", dir.display());
    inputs
}

#[test]
fn the_record_decoding_corpus_replays() {
    for input in corpus("decode_record") {
        decode_record(&input);
    }
}

#[test]
fn the_protocol_corpus_replays() {
    for input in corpus("protocol_operations") {
        protocol_operations(&input);
    }
}

#[test]
fn the_seeds_reach_deep_into_the_protocol() {
    let seeds = seed_corpus();
    let run = |name: &str| {
        let (_, _, bytes) = seeds
            .iter()
            .find(|(target, seed, _)| *target == "protocol_operations" && seed == name)
            .unwrap();
        protocol_operations(bytes)
    };
    assert_eq!(
        run("fill"),
        vec![OfferState::Ready; 2],
        "a seed fills two slots"
    );
    let handout = run("handout");
    assert!(handout.contains(&OfferState::Used), "{handout:?}");
    assert!(seeds
        .iter()
        .any(|(target, _, _)| *target == "decode_record"));
}
