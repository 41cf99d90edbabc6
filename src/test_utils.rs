//! Fixtures shared by the unit tests.

use std::sync::Arc;
use std::time::Duration;

use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning::bitcoin::Network;
use lightning::blinded_path::message::{BlindedMessagePath, MessageContext, OffersContext};
use lightning::offers::nonce::Nonce;
use lightning::sign::ReceiveAuthKey;

use crate::config::InvoiceRequestTarget;
use crate::keys::WalletKeys;
use crate::offers::builder::{BuiltInvoice, OfferFactory, PathEnd};
use crate::offers::cache::CachedOffer;

pub(crate) fn pubkey(byte: u8) -> PublicKey {
    PublicKey::from_secret_key(
        &Secp256k1::new(),
        &SecretKey::from_slice(&[byte; 32]).unwrap(),
    )
}

/// The server the fixture's offers are on unless said otherwise.
pub(crate) fn server_key() -> PublicKey {
    pubkey(9)
}

pub(crate) struct OfferFixture {
    factory: OfferFactory,
}

pub(crate) fn offer_fixture() -> OfferFixture {
    let keys = Arc::new(WalletKeys::from_seed(&[1; 32]));
    OfferFixture {
        factory: OfferFactory::new(keys, Network::Regtest, InvoiceRequestTarget::WalletNode),
    }
}

impl OfferFixture {
    fn server_path(&self) -> BlindedMessagePath {
        self.server_path_with_dummy_hops(0)
    }

    /// `count` paths to the fixture's server, each with `dummy_hops` dummy hops before the server
    /// (LDK's router pads its paths to four hops with three).
    pub fn server_paths(&self, count: usize, dummy_hops: usize) -> Vec<BlindedMessagePath> {
        (0..count)
            .map(|_| self.server_path_with_dummy_hops(dummy_hops))
            .collect()
    }

    fn server_path_with_dummy_hops(&self, dummy_hops: usize) -> BlindedMessagePath {
        let server = PathEnd {
            node_id: pubkey(9),
            receive_auth_key: ReceiveAuthKey([5; 32]),
        };
        let nonce = Nonce::try_from(&[0u8; 16][..]).unwrap();
        // A new RNG start per path, so no two fixture paths are alike.
        static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let entropy = lightning::sign::KeysManager::new(&[2; 32], 1, start, true);
        let context = MessageContext::Offers(OffersContext::InvoiceRequest { nonce });
        BlindedMessagePath::new_with_dummy_hops(
            &[],
            server.node_id,
            dummy_hops,
            server.receive_auth_key,
            context,
            &entropy,
            self.factory.secp(),
        )
    }

    /// A Pending offer in `slot` of [`server_key`], built at `now` over fresh server paths.
    pub fn cached(&self, slot: u16, now: Duration, expiry: Option<Duration>) -> CachedOffer {
        self.cached_on(server_key(), slot, now, expiry)
    }

    /// A Pending offer in `slot` of `server`, built at `now` over fresh server paths.
    pub fn cached_on(
        &self,
        server: PublicKey,
        slot: u16,
        now: Duration,
        expiry: Option<Duration>,
    ) -> CachedOffer {
        let (offer, nonce) = self
            .factory
            .build_offer(vec![self.server_path()], expiry)
            .unwrap();
        let invoice = self
            .factory
            .build_invoice(&offer, nonce, server, &[], now, None)
            .unwrap();
        let mut offer = CachedOffer::new_pending(
            server,
            slot,
            offer,
            nonce,
            self.server_path(),
            invoice,
            now,
            now,
        );
        // Not sent yet: each test sends it, or not, as it needs.
        offer.invoice_sent_at = None;
        offer.delivery = Default::default();
        offer
    }

    pub fn invoice_for(&self, offer: &CachedOffer, now: Duration) -> BuiltInvoice {
        self.factory
            .build_invoice(&offer.offer, offer.nonce, offer.server, &[], now, None)
            .unwrap()
    }
}
