//! The seed in whatever form the wallet keeps it. The SDK needs the 32 bytes the wallet's LDK
//! node gives `KeysManager::new`; an app built on ldk-node never sees those, only a BIP39
//! mnemonic (with an optional passphrase), the 64 seed bytes it makes, or ldk-node's seed file
//! of those 64 bytes. ldk-node makes its `KeysManager` seed from the 64 bytes as the private
//! key of the BIP32 master key over them (its `builder.rs`: `Xpriv::new_master`, then
//! `private_key.secret_bytes()`); so does [`WalletSeed`].

use std::path::Path;

use lightning::bitcoin::bip32::Xpriv;
use lightning::bitcoin::Network;

use crate::Error;

/// How many bytes ldk-node's seed (and seed file) holds.
pub const LDK_NODE_SEED_LEN: usize = 64;

/// The seed of the wallet's LDK node, as `KeysManager::new` takes it.
#[derive(Clone, PartialEq, Eq)]
pub struct WalletSeed([u8; 32]);

impl std::fmt::Debug for WalletSeed {
    // Never the bytes: a seed must not reach a log by a `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WalletSeed(..)")
    }
}

impl WalletSeed {
    /// The 32 bytes an LDK node (not ldk-node) gives `KeysManager::new`, as they are.
    pub fn from_keys_manager_seed(seed: [u8; 32]) -> Self {
        Self(seed)
    }

    /// The seed of the ldk-node node made from `words` (a BIP39 mnemonic, English) and
    /// `passphrase` (BIP39's optional one; `None` is the empty one, as in ldk-node).
    pub fn from_ldk_node_mnemonic(words: &str, passphrase: Option<&str>) -> Result<Self, Error> {
        let mnemonic = bip39::Mnemonic::parse(words)
            .map_err(|e| Error::InvalidConfig(format!("not a BIP39 mnemonic: {e}")))?;
        Ok(Self::from_ldk_node_seed_bytes(
            &mnemonic.to_seed(passphrase.unwrap_or("")),
        ))
    }

    /// The seed of the ldk-node node made from its 64 seed bytes.
    pub fn from_ldk_node_seed_bytes(seed: &[u8; LDK_NODE_SEED_LEN]) -> Self {
        // The network only labels the extended key; the private key is the same on each.
        let master = Xpriv::new_master(Network::Bitcoin, seed)
            .expect("a 64-byte seed is within BIP32's lengths");
        Self(master.private_key.secret_bytes())
    }

    /// The seed of the ldk-node node whose seed file is at `path` (its 64 bytes, as ldk-node
    /// writes them).
    pub fn from_ldk_node_seed_file(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::InvalidConfig(format!("reading the seed file {}: {e}", path.display()))
        })?;
        let seed: [u8; LDK_NODE_SEED_LEN] = bytes.as_slice().try_into().map_err(|_| {
            Error::InvalidConfig(format!(
                "the seed file {} holds {} bytes, not ldk-node's {LDK_NODE_SEED_LEN}",
                path.display(),
                bytes.len()
            ))
        })?;
        Ok(Self::from_ldk_node_seed_bytes(&seed))
    }

    /// The 32 bytes `KeysManager::new` takes, for [`crate::AsyncOffersClient::new`].
    pub fn keys_manager_seed(&self) -> [u8; 32] {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use lightning::bitcoin::hex::FromHex;

    use super::*;

    fn hex<const N: usize>(text: &str) -> [u8; N] {
        <[u8; N]>::from_hex(text).unwrap()
    }

    #[test]
    fn the_seed_bytes_give_the_bip32_master_private_key() {
        // BIP32's test vector 2: a 64-byte seed and the private key of its master key.
        let seed = hex::<64>(
            "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542",
        );
        assert_eq!(
            WalletSeed::from_ldk_node_seed_bytes(&seed).keys_manager_seed(),
            hex::<32>("4b03d6fc340455b363f51020ad3ecca4f0850280cf436c70c727923f6db46c3e")
        );
    }

    #[test]
    fn a_mnemonic_gives_the_seed_of_its_bip39_seed_bytes_and_its_passphrase_counts() {
        // BIP39's first test vector, with the vectors' passphrase "TREZOR".
        let words = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
        let seed_bytes = hex::<64>(
            "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04",
        );
        let from_words = WalletSeed::from_ldk_node_mnemonic(words, Some("TREZOR")).unwrap();
        assert_eq!(
            from_words,
            WalletSeed::from_ldk_node_seed_bytes(&seed_bytes)
        );
        assert_ne!(
            WalletSeed::from_ldk_node_mnemonic(words, None).unwrap(),
            from_words
        );
        assert!(matches!(
            WalletSeed::from_ldk_node_mnemonic("abandon abandon", None),
            Err(Error::InvalidConfig(_))
        ));
        assert_eq!(format!("{from_words:?}"), "WalletSeed(..)");
    }

    #[test]
    fn a_seed_file_is_its_64_bytes_and_another_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys_seed");
        std::fs::write(&path, [7u8; 64]).unwrap();
        assert_eq!(
            WalletSeed::from_ldk_node_seed_file(&path).unwrap(),
            WalletSeed::from_ldk_node_seed_bytes(&[7; 64])
        );
        std::fs::write(&path, [7u8; 32]).unwrap();
        let refused = WalletSeed::from_ldk_node_seed_file(&path).unwrap_err();
        assert!(refused.to_string().contains("32 bytes"), "{refused}");
    }
}
