//! The `async-offers-server` binary: what its JSON lines hold.

use std::process::Command;

use lightning::bitcoin::hex::FromHex;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::util::ser::Readable;

#[test]
fn mint_prints_a_json_line_per_recipient_with_decodable_paths_and_a_stable_node_id() {
    let dir = tempfile::tempdir().unwrap();
    let mint = || {
        let output = Command::new(env!("CARGO_BIN_EXE_async-offers-server"))
            .args(["mint", "--address", "127.0.0.1:9735", "--data-dir"])
            .arg(dir.path())
            .args(["--recipient", "alice", "--recipient", "bob"])
            .args(["--expiry-days", "365"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .collect::<Vec<_>>()
    };
    let first = mint();
    assert_eq!(first.len(), 2, "one line per recipient");
    for line in &first {
        assert_eq!(line["address"], "127.0.0.1:9735");
        let bytes = Vec::<u8>::from_hex(line["paths"].as_str().unwrap()).unwrap();
        let paths: Vec<BlindedMessagePath> = Readable::read(&mut &bytes[..]).unwrap();
        assert!(!paths.is_empty());
    }
    assert_ne!(first[0]["paths"], first[1]["paths"]);
    assert_eq!(
        mint()[0]["node_id"],
        first[0]["node_id"],
        "the identity is kept in the data dir"
    );
}

#[test]
fn bad_flags_are_a_usage_error() {
    for args in [
        ["--network", "moon"],
        ["--offer-paths-days", "forever"],
        ["--offer-paths-secs", "-1"],
    ] {
        let status = Command::new(env!("CARGO_BIN_EXE_async-offers-server"))
            .args(args)
            .output()
            .unwrap()
            .status;
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}
