//! Entry points for the benchmarks (`benches/`, `examples/bench.rs`) and tests into work that
//! is otherwise internal. Not part of the API: no stability promise.

use std::sync::Arc;
use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::bitcoin::Network;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::offers::offer::Offer;
use lightning::offers::static_invoice::StaticInvoice;
use lightning::onion_message::messenger::Responder;
use lightning::util::ser::{BigSize, Readable, Writeable};

use crate::config::ChannelHint;
use crate::keys::WalletKeys;
use crate::offer::{OfferFactory, PathEnd};

/// The client's CPU work for one `OfferPaths` message: an offer, its static invoice, and the
/// payment, held-HTLC and forward paths, exactly as the protocol builds them.
pub struct OfferWork {
    factory: OfferFactory,
}

impl OfferWork {
    /// For the wallet with `seed` on `network`; forwarded requests go to the wallet node.
    pub fn new(seed: &[u8; 32], network: Network) -> Self {
        let keys = Arc::new(WalletKeys::from_seed(seed));
        let end = PathEnd {
            node_id: keys.wallet_node_id(),
            receive_auth_key: keys.wallet_receive_auth_key(),
        };
        Self {
            factory: OfferFactory::new(keys, network, end),
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
        let (offer, nonce) = self.factory.build_offer(paths, paths_expiry)?;
        let built = self
            .factory
            .build_invoice(&offer, nonce, server, hints, now, None)?;
        Ok((offer, built.invoice))
    }
}

/// A `Responder` for replies over `path`, as a received message carries one. It has no public
/// constructor; it is `Readable` from its TLV encoding: a length-prefixed stream with one
/// record, type 0, holding the reply path.
pub fn responder_for(path: &BlindedMessagePath) -> Responder {
    let path_bytes = path.encode();
    let mut record = Vec::new();
    BigSize(0).write(&mut record).expect("writes to a Vec");
    BigSize(path_bytes.len() as u64)
        .write(&mut record)
        .expect("writes to a Vec");
    record.extend_from_slice(&path_bytes);
    let mut stream = Vec::new();
    BigSize(record.len() as u64)
        .write(&mut stream)
        .expect("writes to a Vec");
    stream.extend_from_slice(&record);
    Responder::read(&mut &stream[..]).expect("a valid responder encoding")
}
