//! The offer cache: slots, offer states and every refresh/retry/expiry decision.
//!
//! Pure logic: no I/O, no clock, no threads. Time is a parameter, so every rule is unit-tested
//! with a movable clock. The protocol layer turns the decisions into messages and persists the
//! offers this module changes. One concern per file, the rules of each tested beside them;
//! an offer's life, in steps:
//! 1. A slot is requested (`slots`): each server that is not known to be unreachable has its
//!    share of the target; the missing offers' slots are drawn and `OfferPathsRequest`s
//!    planned, retried with backoff (kept across connections the server dropped unanswered).
//! 2. The server's `OfferPaths` are checked (`lifecycle::check_offer_paths`): requested (or
//!    answering a request lost with a connection, while an offer is missing:
//!    `slots::takes_late_answer`), lasting, not too many; the offer is built outside and comes
//!    back Pending (`insert_pending`), its invoice sent, and resent at its backoff until
//!    confirmed (`refresh::plan_resends`).
//! 3. The confirmation makes it Ready (`lifecycle::invoice_persisted`); Ready offers beyond the
//!    target, or too old, make way.
//! 4. The app takes it (`take`, or `offer_for` a label): Used, and its slot is never reused
//!    while it lives; a new slot is requested at once (step 1).
//! 5. Its invoice is refreshed when due and on new channel hints, only ever newer
//!    (`refresh`): a failure to get one confirmed is told, once.
//! 6. Before it expires the app is told (once a fresh offer can take its place); past expiry
//!    by the wall clock it is no longer refreshed or given out, but keeps its record and slot
//!    for the retention, alive again if the clock was wrong (`refresh::maintain`).
//! 7. Another install's handed-out offers come in through an offer book (`book`), merged so
//!    that none is handed out twice.
//!
//! Slots are each server's `invoice_slot` numbers, kept per server. Each live offer owns one; a
//! slot is reused only once its offer is gone, so a handed-out offer is never overwritten on
//! its server. A new slot is drawn at random from the configured range, never one a live offer
//! or an outstanding request holds: another install on the same seed (a reinstall, a restore,
//! a second device) knows nothing of this one's slots, and drawing from the whole range makes
//! it unlikely to land on one of them, where the lowest free slot would be the very one this
//! install used first. `target` is how many Ready offers to keep in all: taking one
//! immediately requests a new slot.
//!
//! With several servers, each server that is not known to be unreachable has an equal share of
//! the target, which it fills once connected; the shares of unreachable servers go to the
//! connected ones. An offer stays with the server that holds its invoice for its whole life.
//!
//! Two clocks ([`Time`]): waits (retries, resends, how long a Pending offer may stay so) run on
//! the monotonic one; what offers and invoices carry (creation, expiry) on the wall clock. A
//! handed-out offer past its expiry by the wall clock is no longer refreshed or given out, but
//! keeps its record and its slot for the policy's retention: if the clock was wrong and is put
//! right, the offer is live again, as it always was for payers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::RangeInclusive;
use std::time::Duration;

use lightning::bitcoin::secp256k1::PublicKey;
use lightning::offers::offer::OfferId;

mod book;
mod check;
mod lifecycle;
mod offer;
mod refresh;
mod slots;
#[cfg(test)]
mod test_support;

pub(crate) use book::*;
pub(crate) use check::*;
pub(crate) use lifecycle::*;
pub use offer::OfferState;
pub(crate) use offer::*;
pub(crate) use refresh::*;
use slots::SlotRequest;
pub(crate) use slots::*;

/// Whether the client can talk to a server now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Reachability {
    /// The last attempt to connect failed, or the connection dropped.
    Unreachable,
    /// Not tried yet: its share of the target waits for it.
    Connecting,
    /// Connected: requests and invoices can go out.
    Connected,
}

/// Tunables of the cache, from [`crate::Config`].
#[derive(Clone, Debug)]
pub(crate) struct CachePolicy {
    /// The configured servers, in the order of the config (the first ones get the larger
    /// shares when the target does not divide evenly).
    pub servers: Vec<PublicKey>,
    pub target_ready: u16,
    /// A Ready offer older than this is replaced.
    pub ready_max_age: Duration,
    /// A Pending offer whose invoice is not confirmed within this is abandoned, its slot
    /// requested again.
    pub pending_max_age: Duration,
    pub invoice_refresh_interval: Duration,
    pub min_paths_lifetime: Duration,
    pub first_retry_after: Duration,
    pub max_retry_after: Duration,
    /// How long an invoice may go unconfirmed before it is sent again. An answer takes
    /// milliseconds; resending sooner would only pile duplicate work on a busy server. Each
    /// further resend waits twice as long, up to `max_invoice_resend_after`: an invoice is a
    /// 32 KiB onion, and a server that never answers must not cost a phone's data plan.
    pub invoice_resend_after: Duration,
    pub max_invoice_resend_after: Duration,
    /// How long past the refresh interval a handed-out offer's last confirmed invoice may get
    /// before the app is told its refresh failed.
    pub refresh_failure_margin: Duration,
    /// How long before a handed-out offer expires it is announced, and no longer given to its
    /// label by `offer_for` when another offer can be.
    pub expiring_notice: Duration,
    /// How long a handed-out offer is kept, with its slot, after it expires by the wall clock.
    pub expired_retention: Duration,
    /// The slots new offers may be given, on every server.
    pub slot_range: RangeInclusive<u16>,
    /// How often each handed-out offer is checked as a payer sees it (zero: only when the
    /// app asks).
    pub offer_check_interval: Duration,
    /// How long a check waits for the server's answer before it counts as none.
    pub check_answer_timeout: Duration,
}

/// The cache.
#[derive(Debug)]
pub(crate) struct OfferCache {
    policy: CachePolicy,
    offers: Vec<CachedOffer>,
    /// Outstanding requests of connected servers, by server and slot.
    requests: BTreeMap<(PublicKey, u16), SlotRequest>,
    reachability: HashMap<PublicKey, Reachability>,
    /// Since when (monotonic) each unreachable server has been so, while the client ran.
    unreachable_since: HashMap<PublicKey, Duration>,
    /// Per server, the backoff of requests it left unanswered when its connection was lost
    /// (the most attempts, the latest retry): unless the lost connection worked, its next
    /// requests wait for that retry and count on from those attempts, so a server that drops
    /// every connection is not asked anew on each. Cleared by its next answer, by a
    /// reconnection after a connection that worked, or by a stop.
    lost_requests: HashMap<PublicKey, SlotRequest>,
    /// The slots whose requests were lost with their server's connection and not asked for
    /// since: a server may answer them on its next connection (see `takes_late_answer`).
    /// Forgotten once filled or asked for again, at a stop, or a reload.
    lost_slots: BTreeSet<(PublicKey, u16)>,
    /// When (monotonic) a check last found each server without an invoice it had confirmed,
    /// and all its offers were checked or served again for it (see `check::suspect_lost_store`).
    lost_store_suspected: HashMap<PublicKey, Duration>,
    slot_sequence: SlotSequence,
}

impl OfferCache {
    pub fn new(policy: CachePolicy, offers: Vec<CachedOffer>, slot_sequence: SlotSequence) -> Self {
        let reachability = policy
            .servers
            .iter()
            .map(|server| (*server, Reachability::Connecting))
            .collect();
        Self {
            policy,
            offers,
            requests: BTreeMap::new(),
            reachability,
            unreachable_since: HashMap::new(),
            lost_requests: HashMap::new(),
            lost_slots: BTreeSet::new(),
            lost_store_suspected: HashMap::new(),
            slot_sequence,
        }
    }

    pub fn offers(&self) -> &[CachedOffer] {
        &self.offers
    }

    pub fn get(&self, id: OfferId) -> Option<&CachedOffer> {
        self.offers.iter().find(|offer| offer.id() == id)
    }

    pub(super) fn get_mut(&mut self, id: OfferId) -> Option<&mut CachedOffer> {
        self.offers.iter_mut().find(|offer| offer.id() == id)
    }

    /// Whether `server` is one of the config's: offers of others are kept while they live,
    /// but nothing is sent for them.
    pub(crate) fn is_configured(&self, server: &PublicKey) -> bool {
        self.reachability.contains_key(server)
    }

    /// Handed-out offers, for a book another install can import.
    pub fn handed_out(&self) -> impl Iterator<Item = &CachedOffer> {
        self.offers.iter().filter(|o| o.state == OfferState::Used)
    }
}

/// How long to wait for the answer to an invoice already sent `sends` times before sending it
/// again.
fn resend_delay(policy: &CachePolicy, sends: u32) -> Duration {
    doubling(
        policy.invoice_resend_after,
        sends,
        policy.max_invoice_resend_after,
    )
}

/// How long to wait for the answer to a request already sent `attempts` times.
fn retry_delay(policy: &CachePolicy, attempts: u32) -> Duration {
    doubling(policy.first_retry_after, attempts, policy.max_retry_after)
}

/// `first` after the first attempt, twice as long after each further one, at most `cap`.
fn doubling(first: Duration, attempts: u32, cap: Duration) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    first.saturating_mul(factor).min(cap)
}
