//! Entry points for the benchmarks (`benches/`, `examples/bench.rs`) and tests into work that
//! is otherwise internal. Not part of the API: no stability promise.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::bitcoin::Network;
use lightning::blinded_path::message::{AsyncPaymentsContext, BlindedMessagePath, MessageContext};
use lightning::offers::offer::{Offer, OfferId};
use lightning::offers::static_invoice::StaticInvoice;
use lightning::onion_message::messenger::Responder;
use lightning::sign::{KeysManager, NodeSigner, Recipient};
use lightning_persister::fs_store::FilesystemStore;

use crate::clock::{Clock, SystemClock, Time};
use crate::config::ChannelHint;
use crate::config::InvoiceRequestTarget;
use crate::io::records::{decode, encode};
use crate::io::store::OfferStore;
use crate::keys::WalletKeys;
use crate::offers::builder::{BuiltInvoice, OfferFactory};
use crate::offers::cache::{
    CachePolicy, CachedOffer, Confirmation, OfferCache, OfferState, SlotSequence,
};

/// The client's CPU work for one `OfferPaths` message: an offer, its static invoice, and the
/// payment, held-HTLC and forward paths, exactly as the protocol builds them.
pub struct OfferWork {
    factory: OfferFactory,
}

impl OfferWork {
    /// For the wallet with `seed` on `network`; forwarded requests go to the wallet node.
    pub fn new(seed: &[u8; 32], network: Network) -> Self {
        let keys = Arc::new(WalletKeys::from_seed(seed));
        Self {
            factory: OfferFactory::new(keys, network, InvoiceRequestTarget::WalletNode),
        }
    }

    /// Builds one offer over `paths` from `server`, and its invoice with `hints`, at `now`.
    pub fn build(
        &self,
        paths: Vec<BlindedMessagePath>,
        paths_expiry: Option<Duration>,
        server: PublicKey,
        hints: &[ChannelHint],
        now: Duration,
    ) -> Result<(Offer, StaticInvoice), String> {
        let (offer, nonce) = self
            .factory
            .build_offer(paths, paths_expiry)
            .map_err(|e| e.to_string())?;
        let built = self
            .factory
            .build_invoice(&offer, nonce, server, hints, now, None)
            .map_err(|e| e.to_string())?;
        Ok((offer, built.invoice))
    }
}

/// A `Responder` for replies over `path`, as a received message carries one.
pub fn responder_for(path: &BlindedMessagePath) -> Responder {
    crate::offers::responder::responder_for(path)
}

/// The path a `Responder` replies over.
pub fn reply_path_of(responder: &Responder) -> BlindedMessagePath {
    crate::offers::responder::reply_path_of(responder).expect("LDK reads the responders it writes")
}

/// The cache's work at a given size: `offers` Ready offers of one server (real offers and
/// invoices, built once), the records they are stored as, and a data dir holding them.
pub struct CacheWork {
    cache: OfferCache,
    server: PublicKey,
    records: Vec<Vec<u8>>,
    /// A newer invoice for one of the offers, for the refresh transition.
    refreshed: (OfferId, BuiltInvoice),
    /// That offer's first invoice, put back after each refresh: invoices only get newer.
    original: BuiltInvoice,
    store: OfferStore,
    now: Duration,
}

impl CacheWork {
    /// Builds `offers` (at least one) Ready offers and writes them to `data_dir` as the client
    /// would.
    pub fn new(offers: u16, data_dir: &Path) -> Result<Self, String> {
        let offers = offers.max(1);
        let keys = Arc::new(WalletKeys::from_seed(&[0x5a; 32]));
        let factory = OfferFactory::new(keys, Network::Regtest, InvoiceRequestTarget::WalletNode);
        let server_keys = KeysManager::new(&[0xee; 32], 1, 1, true);
        let server = server_keys
            .get_node_id(Recipient::Node)
            .map_err(|()| "server node id")?;
        let server_path = || {
            let context = MessageContext::AsyncPayments(AsyncPaymentsContext::OfferPathsRequest {
                recipient_id: vec![1],
                path_absolute_expiry: None,
            });
            BlindedMessagePath::one_hop(
                server,
                server_keys.get_receive_auth_key(),
                context,
                &server_keys,
                factory.secp(),
            )
        };
        let now = SystemClock.now();
        let expiry = now + Duration::from_secs(365 * 24 * 3600);
        let mut cached = Vec::with_capacity(offers as usize);
        for slot in 0..offers {
            let (offer, nonce) = factory
                .build_offer(vec![server_path()], Some(expiry))
                .map_err(|e| e.to_string())?;
            let invoice = factory
                .build_invoice(&offer, nonce, server, &[], now, None)
                .map_err(|e| e.to_string())?;
            let mut offer = CachedOffer::new_pending(
                server,
                slot,
                offer,
                nonce,
                server_path(),
                invoice,
                now + Duration::from_millis(slot as u64),
                Duration::ZERO,
            );
            offer.state = OfferState::Ready;
            offer.invoice_confirmed = true;
            offer.invoice_confirmed_at = Some(now);
            offer.invoice_sent_at = None;
            offer.delivery = Default::default();
            cached.push(offer);
        }
        let first = &cached[0];
        let later = now + Duration::from_secs(1);
        let refreshed = (
            first.id(),
            factory
                .build_invoice(&first.offer, first.nonce, server, &[], later, None)
                .map_err(|e| e.to_string())?,
        );
        let original = first.invoice.clone();
        let store = OfferStore::new(Arc::new(FilesystemStore::new(data_dir.to_path_buf())));
        for offer in &cached {
            store.save(offer).map_err(|e| e.to_string())?;
        }
        let records = cached.iter().map(encode).collect();
        let policy = CachePolicy {
            servers: vec![server],
            target_ready: offers,
            ready_max_age: Duration::from_secs(2 * 3600),
            pending_max_age: Duration::from_secs(2 * 3600),
            invoice_refresh_interval: Duration::from_secs(2 * 3600),
            min_paths_lifetime: Duration::ZERO,
            first_retry_after: Duration::from_secs(15),
            max_retry_after: Duration::from_secs(15 * 60),
            invoice_resend_after: Duration::from_secs(5),
            max_invoice_resend_after: Duration::from_secs(3600),
            refresh_failure_margin: Duration::from_secs(3600),
            expiring_notice: Duration::from_secs(24 * 3600),
            expired_retention: Duration::from_secs(90 * 24 * 3600),
            slot_range: 0..=u16::MAX,
            offer_check_interval: Duration::from_secs(24 * 3600),
            check_answer_timeout: Duration::from_secs(10),
        };
        Ok(Self {
            cache: OfferCache::new(policy, cached, SlotSequence::InOrder),
            server,
            records,
            refreshed,
            original,
            store,
            now: later,
        })
    }

    /// The stored records of the offers.
    pub fn records(&self) -> &[Vec<u8>] {
        &self.records
    }

    /// Select: the offer `take_offer` would hand out, marked Used, then put back.
    pub fn select(&mut self) -> bool {
        let Some(taken) = self.cache.take(None, self.now) else {
            return false;
        };
        self.cache.untake(taken.id());
        true
    }

    /// Transition: an offer's invoice replaced by a newer one, then confirmed by the server
    /// (and its first invoice put back, for the next run).
    pub fn refresh_and_confirm(&mut self) -> bool {
        let (id, invoice) = &self.refreshed;
        let created_at = invoice.invoice.created_at();
        let now = Time {
            wall: self.now,
            monotonic: self.now,
        };
        let confirmed = self.cache.replace_invoice(*id, invoice.clone(), self.now)
            && matches!(
                self.cache.invoice_persisted(*id, created_at, now),
                Confirmation::Refreshed
            );
        self.cache.put_back_invoice(*id, self.original.clone());
        confirmed
    }

    /// Serialize: every offer encoded as a store record; the total bytes.
    pub fn serialize_all(&self) -> usize {
        self.cache.offers().iter().map(|o| encode(o).len()).sum()
    }

    /// Decode: every record read back (checksum, offer and invoice parsing); how many.
    pub fn decode_all(&self) -> Result<usize, String> {
        for record in &self.records {
            decode(record, self.server).map_err(|e| e.to_string())?;
        }
        Ok(self.records.len())
    }

    /// Load: every record listed, read from the data dir and decoded, as a start does.
    pub fn load_all(&self) -> Result<usize, String> {
        self.store
            .load_all(self.server)
            .map(|offers| offers.len())
            .map_err(|e| e.to_string())
    }
}
