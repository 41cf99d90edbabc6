//! Keys: everything the SDK derives from the wallet's 32-byte seed.
//!
//! Two identities come out of one seed:
//! - the **wallet node** (`KeysManager::new(seed)`, exactly what the app's own LDK node uses):
//!   offers, static invoices, payment secrets, payment paths, held-HTLC paths and the
//!   invoice-request forward path all belong to it, so that node can claim the payments;
//! - the **transport** identity, a domain-separated derivation used only for the SDK's own peer
//!   connection to the server, so it never collides with the wallet node's connection to the
//!   same LSP. It is stable across restarts, so replies to our earlier messages still reach us.

mod payment_secret;
mod wallet_seed;

pub use wallet_seed::{WalletSeed, LDK_NODE_SEED_LEN};

pub(crate) use payment_secret::EXPIRY_GRACE_SECS;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lightning::bitcoin::bip32::{ChildNumber, Xpriv};
use lightning::bitcoin::hashes::sha256::Hash as Sha256;
use lightning::bitcoin::hashes::{Hash, HashEngine};
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1};
use lightning::bitcoin::Network;
use lightning::ln::inbound_payment::ExpandedKey;
use lightning::sign::{KeysManager, NodeSigner, ReceiveAuthKey, Recipient};
use lightning::types::payment::PaymentSecret;

use crate::clock::{Clock, SystemClock};

pub(crate) use payment_secret::InboundPaymentKeys;

/// LDK's `KeysManager` derives its inbound-payment key at m/5'.
const INBOUND_PAYMENT_KEY_INDEX: u32 = 5;
const TRANSPORT_KEY_DOMAIN: &[u8] = b"async-offers/transport-identity/v1";

/// The keys of one wallet, derived from its seed.
///
/// Each identity's `KeysManager` is derived when first used (building an offer, connecting):
/// one costs about a third of a millisecond, and a client made only to list its offers (an
/// app's launch) needs neither.
pub struct WalletKeys {
    seed: [u8; 32],
    wallet: OnceLock<Identity>,
    transport: OnceLock<Identity>,
    rng_start: Duration,
    inbound: InboundPaymentKeys,
}

/// One node identity: its keys manager and node id.
struct Identity {
    keys: Arc<KeysManager>,
    node_id: PublicKey,
}

impl Identity {
    fn derive(seed: &[u8; 32], rng_start: Duration) -> Self {
        let keys = Arc::new(KeysManager::new(
            seed,
            rng_start.as_secs(),
            rng_start.subsec_nanos(),
            true,
        ));
        let node_id = keys
            .get_node_id(Recipient::Node)
            .expect("KeysManager has a node key");
        Self { keys, node_id }
    }
}

impl WalletKeys {
    /// Derives both identities from the seed the app's LDK node passes to `KeysManager::new`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::with_rng_start(seed, SystemClock.now())
    }

    /// As [`Self::from_seed`], with LDK's RNG (nonces, path blinding) started from `rng_start`
    /// instead of the time: the same keys, and repeatable randomness for the fuzz targets.
    pub(crate) fn with_rng_start(seed: &[u8; 32], rng_start: Duration) -> Self {
        Self {
            seed: *seed,
            wallet: OnceLock::new(),
            transport: OnceLock::new(),
            rng_start,
            inbound: InboundPaymentKeys::new(&inbound_payment_key_material(seed)),
        }
    }

    fn wallet(&self) -> &Identity {
        self.wallet
            .get_or_init(|| Identity::derive(&self.seed, self.rng_start))
    }

    fn transport(&self) -> &Identity {
        self.transport
            .get_or_init(|| Identity::derive(&transport_seed(&self.seed), self.rng_start))
    }

    /// The wallet node's id: the node that receives the payments.
    pub fn wallet_node_id(&self) -> PublicKey {
        self.wallet().node_id
    }

    /// The id the SDK uses on its own connection to the server.
    pub fn transport_node_id(&self) -> PublicKey {
        self.transport().node_id
    }

    /// The wallet node's `ExpandedKey` (offer metadata, signing-key derivation, TLV auth).
    pub fn expanded_key(&self) -> ExpandedKey {
        self.wallet().keys.get_expanded_key()
    }

    /// The wallet node's key authenticating contexts of blinded paths that end at it.
    pub fn wallet_receive_auth_key(&self) -> ReceiveAuthKey {
        self.wallet().keys.get_receive_auth_key()
    }

    /// The transport identity's key authenticating reply paths that end at the SDK.
    pub fn transport_receive_auth_key(&self) -> ReceiveAuthKey {
        self.transport().keys.get_receive_auth_key()
    }

    /// The wallet node's keys manager, used as entropy and for wallet-side path building.
    pub fn wallet_keys_manager(&self) -> &Arc<KeysManager> {
        &self.wallet().keys
    }

    /// The transport identity's keys manager: node signer and entropy of the SDK's messenger.
    pub fn transport_keys_manager(&self) -> &Arc<KeysManager> {
        &self.transport().keys
    }

    /// The payment secret LDK's `create_for_spontaneous_payment` gives an amount-less async
    /// offer's static invoice expiring `expiry_delta_secs` after `now_secs`.
    pub fn async_payment_secret(&self, expiry_delta_secs: u32, now_secs: u64) -> PaymentSecret {
        self.inbound
            .spontaneous_payment_secret(expiry_delta_secs, now_secs)
    }
}

/// The key material `KeysManager::new` feeds `ExpandedKey::new`: the private key at m/5'.
fn inbound_payment_key_material(seed: &[u8; 32]) -> [u8; 32] {
    let secp = Secp256k1::signing_only();
    // The network only matters for serializing the xpriv, which never happens here.
    let master = Xpriv::new_master(Network::Testnet, seed).expect("32-byte seed is a valid master");
    let index = ChildNumber::from_hardened_idx(INBOUND_PAYMENT_KEY_INDEX).expect("small index");
    master
        .derive_priv(&secp, &[index])
        .expect("hardened derivation")
        .private_key
        .secret_bytes()
}

fn transport_seed(seed: &[u8; 32]) -> [u8; 32] {
    let mut engine = Sha256::engine();
    engine.input(TRANSPORT_KEY_DOMAIN);
    engine.input(seed);
    Sha256::from_engine(engine).to_byte_array()
}

#[cfg(test)]
impl WalletKeys {
    /// Whether either identity's `KeysManager` was derived yet.
    pub(crate) fn any_derived(&self) -> bool {
        self.wallet.get().is_some() || self.transport.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_identity_is_derived_when_first_used_and_only_then() {
        let keys = WalletKeys::from_seed(&[7; 32]);
        assert!(keys.wallet.get().is_none() && keys.transport.get().is_none());
        let wallet = keys.wallet_node_id();
        assert!(
            keys.transport.get().is_none(),
            "the wallet's use derives only it"
        );
        let transport = keys.transport_node_id();
        assert_eq!(keys.wallet_node_id(), wallet);
        assert_eq!(keys.transport_node_id(), transport);
        assert_ne!(wallet, transport);
    }

    #[test]
    fn transport_identity_is_stable_and_distinct_from_the_wallet_node() {
        let a = WalletKeys::from_seed(&[7; 32]);
        let b = WalletKeys::from_seed(&[7; 32]);
        assert_eq!(a.transport_node_id(), b.transport_node_id());
        assert_eq!(a.wallet_node_id(), b.wallet_node_id());
        assert_ne!(a.transport_node_id(), a.wallet_node_id());
        assert_ne!(
            a.transport_node_id(),
            WalletKeys::from_seed(&[8; 32]).transport_node_id()
        );
    }

    #[test]
    fn wallet_node_id_is_the_ldk_node_id_for_the_same_seed() {
        let keys = WalletKeys::from_seed(&[3; 32]);
        let ldk = KeysManager::new(&[3; 32], 1, 2, true);
        assert_eq!(
            keys.wallet_node_id(),
            ldk.get_node_id(Recipient::Node).unwrap()
        );
        assert_eq!(keys.expanded_key(), ldk.get_expanded_key());
    }
}
