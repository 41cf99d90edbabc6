//! One offer as the cache keeps it: its state, its invoice and what its delivery and refresh
//! need.

use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::offers::nonce::Nonce;
use lightning::offers::offer::{Offer, OfferId};

use super::OfferCheck;
use crate::clock::Time;
use crate::offers::builder::BuiltInvoice;

/// Where an offer is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum))]
#[non_exhaustive]
pub enum OfferState {
    /// Built; its static invoice was sent to the server, not yet confirmed.
    Pending,
    /// Confirmed by the server and never handed out.
    Ready,
    /// Handed out to the app; kept, with its invoice refreshed, until it expires.
    Used,
}

/// One offer with everything needed to keep its invoice fresh on its server.
#[derive(Clone, Debug)]
pub(crate) struct CachedOffer {
    /// The node id of the server holding the offer's invoice.
    pub server: PublicKey,
    pub slot: u16,
    pub offer: Offer,
    pub nonce: Nonce,
    pub state: OfferState,
    pub label: Option<String>,
    pub created_at: Duration,
    /// When it was handed out (Used offers only).
    pub handed_out_at: Option<Duration>,
    /// The server's reply path from `OfferPaths`; every invoice for this offer goes there.
    pub server_path: BlindedMessagePath,
    /// The newest invoice built for this offer.
    pub invoice: BuiltInvoice,
    /// Whether the server confirmed persisting `invoice`.
    pub invoice_confirmed: bool,
    /// When `invoice` was last sent by this process, on the monotonic clock (not persisted:
    /// after a restart, unknown).
    pub invoice_sent_at: Option<Duration>,
    /// When this process built the offer, on the monotonic clock: how long a Pending offer has
    /// waited for its confirmation. Not persisted, as Pending offers are not.
    pub pending_since: Duration,
    /// Whether the offer's coming expiry was announced (stored: the event waits in the queue
    /// until the app handles it, so it is made once).
    pub expiry_announced: bool,
    /// Whether the offer's expiry was announced (stored likewise).
    pub expired_announced: bool,
    /// Whether the app was told its invoice is stale ([`Maintenance::refresh_failed`]), since
    /// the server last confirmed one (stored likewise: once per failure, across restarts).
    pub refresh_failure_announced: bool,
    /// When the server last confirmed an invoice of this offer, by the wall clock: what the
    /// payers it serves get is at most that old plus the refresh interval.
    pub invoice_confirmed_at: Option<Duration>,
    /// How the current invoice's way to the server goes (not persisted).
    pub delivery: Delivery,
    /// When, by the monotonic clock, the current invoice is due for a refresh (not persisted:
    /// `None` until this process works it out, once, from the invoice's creation time and the
    /// wall clock; see [`CachedOffer::refresh_due`]).
    pub refresh_due_at: Option<Duration>,
    /// When, by the monotonic clock, the last confirmation is old enough for the app to hear
    /// that the refresh failed (likewise, from when it was confirmed).
    pub stale_at: Option<Duration>,
    /// The creation time last given to an invoice being built for this offer (not persisted):
    /// each later one gets a later second, so that whichever build finishes first, the one
    /// begun last (with the newest hints) is the newest invoice.
    pub invoice_time_reserved: Option<Duration>,
    /// When, by the wall clock, a check last got this offer's invoice from its server as a
    /// payer does (stored; `None`: never).
    pub verified_at: Option<Duration>,
    /// When, by the wall clock, the last round of checks ended, verified or not (stored, so
    /// that a new process does not start a round over; `None`: never).
    pub checked_at: Option<Duration>,
    /// How many times the round of checks under way served the invoice again (stored, so
    /// that a new process goes on with it, not over; 0: none under way).
    pub check_repairs: u32,
    /// Why the offer can no longer be kept payable by this client, if a check found so: its
    /// slot on the server holds another offer's invoice (stored). Such an offer is never
    /// served, refreshed, checked or given to a label again.
    pub broken: Option<String>,
    /// Its checks as this process runs them (not persisted).
    pub check: OfferCheck,
}

/// What this process knows of the current invoice's way to its server.
#[derive(Clone, Debug, Default)]
pub(crate) struct Delivery {
    /// Sends of the current invoice unanswered so far: each waits twice as long for an answer
    /// before the next, up to the policy's cap.
    pub sends: u32,
    /// Why the last attempt to rebuild or write a refreshed invoice failed, if it did.
    pub problem: Option<String>,
    /// Whether maintenance asked for the invoice to be rebuilt and the rebuild has not ended
    /// (in a new invoice or a problem): ticks that come meanwhile, however many, do not ask
    /// again.
    pub rebuild_under_way: bool,
    /// What the offer said of its last confirmation before the current invoice's, while that
    /// one is being written: put back if the write fails ([`OfferCache::confirmation_unwritten`]).
    pub confirmed_before: Option<ConfirmedBefore>,
    /// Whether the current invoice is being served again because a check found the server
    /// without it (not a new invoice): its confirmation is no refresh.
    pub serving_again: bool,
}

/// An offer's account of its last confirmation, as it was before a newer one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConfirmedBefore {
    pub(super) at: Option<Duration>,
    pub(super) stale_at: Option<Duration>,
    pub(super) failure_announced: bool,
}

impl CachedOffer {
    /// A new offer of `slot` on `server`, built at `now` (wall) and `monotonic`, whose first
    /// invoice is about to be sent: Pending until the server confirms it.
    #[allow(clippy::too_many_arguments)]
    pub fn new_pending(
        server: PublicKey,
        slot: u16,
        offer: Offer,
        nonce: Nonce,
        server_path: BlindedMessagePath,
        invoice: BuiltInvoice,
        now: Duration,
        monotonic: Duration,
    ) -> Self {
        Self {
            server,
            slot,
            offer,
            nonce,
            state: OfferState::Pending,
            label: None,
            created_at: now,
            handed_out_at: None,
            server_path,
            invoice,
            invoice_confirmed: false,
            invoice_sent_at: Some(monotonic),
            pending_since: monotonic,
            expiry_announced: false,
            expired_announced: false,
            refresh_failure_announced: false,
            invoice_confirmed_at: None,
            delivery: Delivery {
                sends: 1,
                ..Delivery::default()
            },
            invoice_time_reserved: None,
            refresh_due_at: None,
            stale_at: None,
            verified_at: None,
            checked_at: None,
            check_repairs: 0,
            broken: None,
            check: OfferCheck::default(),
        }
    }

    /// Its first invoice was not sent after all (its server was not connected): the resends
    /// planned on connection send it.
    pub fn invoice_not_sent(&mut self) {
        self.invoice_sent_at = None;
        self.delivery.sends = 0;
    }

    pub fn id(&self) -> OfferId {
        self.offer.id()
    }

    pub fn expires_at(&self) -> Option<Duration> {
        self.offer.absolute_expiry()
    }

    pub(crate) fn is_expired(&self, now: Duration) -> bool {
        self.expires_at().is_some_and(|expiry| expiry <= now)
    }

    /// When (monotonic) its invoice is due for a refresh: as set when this process built or
    /// installed it, else `refresh_interval` after its creation by the wall clock at `now`.
    /// A creation time in the future (the clock was ahead when it was made, or is behind now)
    /// counts as due: how old the invoice is cannot be known, and one refresh too many costs
    /// less than a stale invoice.
    pub(super) fn refresh_due(&self, refresh_interval: Duration, now: Time) -> Duration {
        self.refresh_due_at.unwrap_or_else(|| {
            match now.wall.checked_sub(self.invoice.invoice.created_at()) {
                Some(age) => now.monotonic + refresh_interval.saturating_sub(age),
                None => now.monotonic,
            }
        })
    }

    /// Whether its invoice is due for a refresh at `now`.
    pub(super) fn invoice_due(&self, refresh_interval: Duration, now: Time) -> bool {
        self.refresh_due(refresh_interval, now) <= now.monotonic
    }

    /// When (monotonic) its last confirmation is `stale_after` old: as set when this process
    /// got it, else from its wall-clock time at `now` (one in the future counts as just now:
    /// the app is not told of a failure on a wrong clock's word).
    pub(super) fn stale_deadline(&self, stale_after: Duration, now: Time) -> Duration {
        self.stale_at.unwrap_or_else(|| {
            let confirmed = self
                .invoice_confirmed_at
                .or(self.handed_out_at)
                .unwrap_or(self.created_at);
            now.monotonic + stale_after.saturating_sub(now.wall.saturating_sub(confirmed))
        })
    }

    /// Whether it expires within `notice` of `now`.
    pub(super) fn is_expiring(&self, notice: Duration, now: Duration) -> bool {
        self.expires_at()
            .is_some_and(|expiry| expiry.saturating_sub(notice) <= now)
    }
}
