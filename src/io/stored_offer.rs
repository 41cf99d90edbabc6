//! What an offer record keeps, and how it becomes an offer of the cache again.

use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::offers::nonce::Nonce;
use lightning::offers::offer::Offer;
use lightning::offers::static_invoice::StaticInvoice;

use super::RecordError;
use crate::offers::builder::BuiltInvoice;
use crate::offers::cache::{CachedOffer, OfferCheck, OfferState};
use crate::offers::responder::AsResponder;

/// What an offer record keeps: everything of a [`CachedOffer`] but what only this process
/// knows of its invoice's way to the server.
pub(crate) struct StoredOffer {
    pub server: PublicKey,
    pub slot: u16,
    pub state: OfferState,
    pub offer: Offer,
    pub nonce: Nonce,
    pub label: Option<String>,
    pub created_at: Duration,
    pub handed_out_at: Option<Duration>,
    /// The server's reply path, as LDK keeps a `Responder`.
    pub server_path: AsResponder,
    pub invoice: StaticInvoice,
    pub forward_invoice_request_path: BlindedMessagePath,
    pub invoice_confirmed: bool,
    pub invoice_confirmed_at: Option<Duration>,
    pub expiry_announced: bool,
    pub expired_announced: bool,
    /// Present (and empty) only when true, so that records written before it was added, where
    /// it is absent, are still written byte for byte as they are read.
    pub refresh_failure_announced: Option<()>,
    /// When a check last found the offer's invoice served (added after `AOF5`'s first release).
    pub verified_at: Option<Duration>,
    /// Why a check found the offer broken (likewise).
    pub broken: Option<String>,
    /// When the last round of checks ended (likewise).
    pub checked_at: Option<Duration>,
    /// How many repairs the round of checks under way made (likewise; absent when none).
    pub check_repairs: Option<u32>,
}

// In type order, as TLV streams must be. (LDK's macros drop readers that have no `Drop`.)
#[allow(clippy::drop_non_drop)]
mod stored_offer_encoding {
    use super::StoredOffer;

    lightning::impl_writeable_tlv_based!(StoredOffer, {
        (0, server, required),
        (1, invoice_confirmed_at, option),
        (2, slot, required),
        (3, expiry_announced, (default_value, false)),
        (4, state, required),
        (5, expired_announced, (default_value, false)),
        (6, offer, required),
        (7, refresh_failure_announced, option),
        (8, nonce, required),
        (9, verified_at, option),
        (10, label, option),
        (11, broken, option),
        (12, created_at, required),
        (13, checked_at, option),
        (14, handed_out_at, option),
        (15, check_repairs, option),
        (16, server_path, required),
        (18, invoice, required),
        (20, forward_invoice_request_path, required),
        (22, invoice_confirmed, required),
    });
}

impl StoredOffer {
    /// A copy of `offer`'s kept fields, for the tests that hold [`encode`] to this type's writer.
    #[cfg(test)]
    pub(crate) fn of(offer: &CachedOffer) -> Self {
        Self {
            server: offer.server,
            slot: offer.slot,
            state: offer.state,
            offer: offer.offer.clone(),
            nonce: offer.nonce,
            label: offer.label.clone(),
            created_at: offer.created_at,
            handed_out_at: offer.handed_out_at,
            server_path: AsResponder(offer.server_path.clone()),
            invoice: offer.invoice.invoice.clone(),
            forward_invoice_request_path: offer.invoice.forward_invoice_request_path.clone(),
            invoice_confirmed: offer.invoice_confirmed,
            invoice_confirmed_at: offer.invoice_confirmed_at,
            expiry_announced: offer.expiry_announced,
            expired_announced: offer.expired_announced,
            refresh_failure_announced: offer.refresh_failure_announced.then_some(()),
            verified_at: offer.verified_at,
            broken: offer.broken.clone(),
            checked_at: offer.checked_at,
            check_repairs: (offer.check_repairs > 0).then_some(offer.check_repairs),
        }
    }

    /// The offer as the cache holds it; nothing is known yet of its invoice's delivery.
    pub(crate) fn into_cached(self) -> Result<CachedOffer, RecordError> {
        if self.invoice.offer_id() != self.offer.id() {
            return Err(RecordError::InvoiceOfAnotherOffer);
        }
        Ok(CachedOffer {
            server: self.server,
            slot: self.slot,
            offer: self.offer,
            nonce: self.nonce,
            state: self.state,
            label: self.label,
            created_at: self.created_at,
            handed_out_at: self.handed_out_at,
            server_path: self.server_path.0,
            invoice: BuiltInvoice {
                invoice: self.invoice,
                forward_invoice_request_path: self.forward_invoice_request_path,
            },
            invoice_confirmed: self.invoice_confirmed,
            invoice_sent_at: None,
            pending_since: Duration::ZERO,
            expiry_announced: self.expiry_announced,
            expired_announced: self.expired_announced,
            refresh_failure_announced: self.refresh_failure_announced.is_some(),
            invoice_confirmed_at: self.invoice_confirmed_at,
            delivery: Default::default(),
            invoice_time_reserved: None,
            refresh_due_at: None,
            stale_at: None,
            verified_at: self.verified_at,
            checked_at: self.checked_at,
            check_repairs: self.check_repairs.unwrap_or(0),
            broken: self.broken,
            // A round with repairs under way goes on at once, where it was.
            check: OfferCheck {
                asked: self.check_repairs.is_some_and(|repairs| repairs > 0),
                repairs: self.check_repairs.unwrap_or(0),
                ..OfferCheck::default()
            },
        })
    }
}
