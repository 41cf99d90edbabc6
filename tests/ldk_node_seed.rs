//! `WalletSeed` gives the ids of real ldk-node 0.7.1 nodes: a node built by ldk-node's own
//! `Builder` from a mnemonic (with and without a passphrase), from 64 seed bytes and from a
//! seed file has the id the SDK reports for the same seed. `Builder::build` needs no
//! chain, so the nodes are built and never started.

use std::path::Path;

use async_offers::keys::WalletKeys;
use async_offers::WalletSeed;
use lightning::bitcoin::Network;

const WORDS: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

/// The id of the ldk-node node `configure` sets the entropy of.
fn ldk_node_id(configure: impl FnOnce(&mut ldk_node::Builder)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut builder = ldk_node::Builder::new();
    builder.set_network(Network::Regtest);
    builder.set_storage_dir_path(dir.path().to_str().unwrap().to_string());
    configure(&mut builder);
    builder
        .build()
        .expect("ldk-node builds")
        .node_id()
        .to_string()
}

/// The wallet node id the SDK reports for `seed` (what `AsyncOffersClient::node_id` returns).
fn sdk_node_id(seed: &WalletSeed) -> String {
    WalletKeys::from_seed(&seed.keys_manager_seed())
        .wallet_node_id()
        .to_string()
}

fn mnemonic() -> bip39::Mnemonic {
    bip39::Mnemonic::parse(WORDS).unwrap()
}

#[test]
fn a_mnemonic_gives_the_ldk_node_nodes_id_with_or_without_its_passphrase() {
    for passphrase in [None, Some("TREZOR")] {
        let ldk_node = ldk_node_id(|builder| {
            builder.set_entropy_bip39_mnemonic(mnemonic(), passphrase.map(String::from));
        });
        let ours = sdk_node_id(&WalletSeed::from_ldk_node_mnemonic(WORDS, passphrase).unwrap());
        assert_eq!(ours, ldk_node, "passphrase {passphrase:?}");
    }
    let other = ldk_node_id(|builder| {
        builder.set_entropy_bip39_mnemonic(mnemonic(), Some("another".into()));
    });
    let ours = sdk_node_id(&WalletSeed::from_ldk_node_mnemonic(WORDS, Some("TREZOR")).unwrap());
    assert_ne!(ours, other, "another passphrase is another node");
}

#[test]
fn seed_bytes_and_a_seed_file_give_the_ldk_node_nodes_id() {
    let bytes: [u8; 64] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
    let ldk_node = ldk_node_id(|builder| {
        builder.set_entropy_seed_bytes(bytes);
    });
    assert_eq!(
        sdk_node_id(&WalletSeed::from_ldk_node_seed_bytes(&bytes)),
        ldk_node
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys_seed");
    std::fs::write(&file, bytes).unwrap();
    let from_file = ldk_node_id(|builder| {
        builder.set_entropy_seed_path(file.to_str().unwrap().to_string());
    });
    assert_eq!(
        from_file, ldk_node,
        "ldk-node reads the file as those bytes"
    );
    assert_eq!(
        sdk_node_id(&WalletSeed::from_ldk_node_seed_file(Path::new(&file)).unwrap()),
        ldk_node
    );
}
