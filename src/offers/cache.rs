//! The offer cache: slots, offer states and every refresh/retry/expiry decision.
//!
//! Pure logic: no I/O, no clock, no threads. Time is a parameter, so every rule is unit-tested
//! with a movable clock. The protocol layer turns the decisions into messages and persists the
//! offers this module changes.
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::RangeInclusive;
use std::time::Duration;

use lightning::bitcoin::hashes::sha256::Hash as Sha256;
use lightning::bitcoin::hashes::{Hash, HashEngine};
use lightning::bitcoin::secp256k1::PublicKey;
use lightning::blinded_path::message::BlindedMessagePath;
use lightning::offers::nonce::Nonce;
use lightning::offers::offer::{Offer, OfferId};

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
}

/// Why a handed-out offer's invoice is not fresh and confirmed ([`OfferCache::unrefreshed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Unrefreshed {
    /// Past the refresh interval; a new one is not built yet.
    Due,
    /// Sent `sends` times (0: not yet), not confirmed yet.
    Unconfirmed { sends: u32 },
    /// Building, writing or keeping it failed, as this says.
    Failed(String),
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
}

/// An offer's account of its last confirmation, as it was before a newer one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConfirmedBefore {
    at: Option<Duration>,
    stale_at: Option<Duration>,
    failure_announced: bool,
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
        }
    }

    pub fn id(&self) -> OfferId {
        self.offer.id()
    }

    pub fn expires_at(&self) -> Option<Duration> {
        self.offer.absolute_expiry()
    }

    fn is_expired(&self, now: Duration) -> bool {
        self.expires_at().is_some_and(|expiry| expiry <= now)
    }

    /// When (monotonic) its invoice is due for a refresh: as set when this process built or
    /// installed it, else `refresh_interval` after its creation by the wall clock at `now`.
    /// A creation time in the future (the clock was ahead when it was made, or is behind now)
    /// counts as due: how old the invoice is cannot be known, and one refresh too many costs
    /// less than a stale invoice.
    fn refresh_due(&self, refresh_interval: Duration, now: Time) -> Duration {
        self.refresh_due_at.unwrap_or_else(|| {
            match now.wall.checked_sub(self.invoice.invoice.created_at()) {
                Some(age) => now.monotonic + refresh_interval.saturating_sub(age),
                None => now.monotonic,
            }
        })
    }

    /// Whether its invoice is due for a refresh at `now`.
    fn invoice_due(&self, refresh_interval: Duration, now: Time) -> bool {
        self.refresh_due(refresh_interval, now) <= now.monotonic
    }

    /// When (monotonic) its last confirmation is `stale_after` old: as set when this process
    /// got it, else from its wall-clock time at `now` (one in the future counts as just now:
    /// the app is not told of a failure on a wrong clock's word).
    fn stale_deadline(&self, stale_after: Duration, now: Time) -> Duration {
        self.stale_at.unwrap_or_else(|| {
            let confirmed = self
                .invoice_confirmed_at
                .or(self.handed_out_at)
                .unwrap_or(self.created_at);
            now.monotonic + stale_after.saturating_sub(now.wall.saturating_sub(confirmed))
        })
    }

    /// Whether it expires within `notice` of `now`.
    fn is_expiring(&self, notice: Duration, now: Duration) -> bool {
        self.expires_at()
            .is_some_and(|expiry| expiry.saturating_sub(notice) <= now)
    }
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
}

/// The order in which an install tries slots: for each server, a sequence of candidates, of
/// which a new offer gets the first that no live offer or outstanding request holds.
#[derive(Clone, Debug)]
pub(crate) enum SlotSequence {
    /// The range's slots in order: the lowest free slot (tests, fuzzing).
    InOrder,
    /// Slots spread uniformly over the range by a key of this install's: another install
    /// cannot predict them, and this one keeps coming back to the same few, so that however
    /// many offers it replaces over the years it only ever touches about as many slots as it
    /// holds offers at once.
    Keyed([u8; 32]),
}

impl SlotSequence {
    /// The `index`th candidate slot of `server` in `range`.
    fn candidate(&self, server: &PublicKey, index: u32, range: &RangeInclusive<u16>) -> u16 {
        let size = u32::from(*range.end() - *range.start()) + 1;
        let offset = match self {
            SlotSequence::InOrder => index % size,
            SlotSequence::Keyed(key) => {
                let mut engine = Sha256::engine();
                engine.input(key);
                engine.input(&server.serialize());
                engine.input(&index.to_be_bytes());
                let hash = Sha256::from_engine(engine).to_byte_array();
                // The bias of reducing 64 bits to at most 2^16 values is below 2^-47.
                (u64::from_be_bytes(hash[..8].try_into().expect("8 of 32 bytes")) % u64::from(size))
                    as u32
            }
        };
        *range.start() + offset as u16
    }
}

#[derive(Clone, Debug)]
struct SlotRequest {
    attempts: u32,
    retry_at: Duration,
}

/// An `OfferPathsRequest` to send now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PlannedRequest {
    pub server: PublicKey,
    pub slot: u16,
    pub attempt: u32,
}

/// Why an `OfferPaths` message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OfferPathsRejection {
    ReplyPathExpired,
    SlotNotRequested,
    NoPaths,
    /// More than [`MAX_OFFER_PATHS`]: an offer that long is no use in a QR code, and its
    /// invoice would outgrow what servers store.
    TooManyPaths {
        count: usize,
    },
    /// The paths last `lifetime` from now, less than the `required` minimum.
    ExpiresTooSoon {
        lifetime: Duration,
        required: Duration,
    },
    DuplicatePaths,
}

impl std::fmt::Display for OfferPathsRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ReplyPathExpired => write!(
                f,
                "ReplyPathExpired: the answer came over a reply path that has expired"
            ),
            Self::SlotNotRequested => write!(
                f,
                "SlotNotRequested: no request for that slot is outstanding (a late or repeated answer)"
            ),
            Self::NoPaths => write!(f, "NoPaths: the answer holds no offer path"),
            Self::TooManyPaths { count } => write!(
                f,
                "TooManyPaths: {count} offer paths, more than the {MAX_OFFER_PATHS} an offer can carry"
            ),
            Self::ExpiresTooSoon { lifetime, required } => write!(
                f,
                "ExpiresTooSoon: the offer paths expire in {}, sooner than the {} min_offer_paths_lifetime requires",
                human(*lifetime),
                human(*required)
            ),
            Self::DuplicatePaths => write!(
                f,
                "DuplicatePaths: the paths are another offer's"
            ),
        }
    }
}

/// `duration` in the largest whole unit that fits: "90 days", "10 minutes".
fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (count, unit) = match secs {
        s if s >= 86_400 => (s / 86_400, "day"),
        s if s >= 3_600 => (s / 3_600, "hour"),
        s if s >= 60 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

/// Unconfirmed sends of a fresh invoice, to a connected server, before its offer's refresh
/// counts as failed: with the doubling waits, about 35 seconds of silence.
const SENDS_BEFORE_FAILURE: u32 = 4;

/// The most offer paths accepted from a server; LDK's servers hand out at most three.
pub(crate) const MAX_OFFER_PATHS: usize = 8;

/// What a `StaticInvoicePersisted` confirmation did.
#[derive(Debug)]
pub(crate) enum Confirmation {
    /// A Pending offer became Ready; `replaced` Ready offers were dropped in its favour.
    NowReady { replaced: Vec<CachedOffer> },
    /// A refreshed invoice of a Ready or Used offer was confirmed.
    Refreshed,
    /// An older invoice of the offer was confirmed after its current one was installed (sent,
    /// or waiting for that answer): the server may have stored the older one last. The current
    /// one is unconfirmed, to send (again) now.
    Superseded,
    /// Unknown offer, stale invoice, or a duplicate: nothing changed.
    Ignored,
}

/// What [`OfferCache::offer_for`] did to the offer it gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Nothing: the label's offer, as before.
    Unchanged,
    /// A Ready offer, handed out now: to write before it is returned.
    HandedOut,
    /// The label's offer about to expire, for want of a fresh one: its expiry is to be
    /// announced again once one can take its place (to write; not worth failing the call for).
    NoticeOwed,
}

/// What [`OfferCache::import`] did.
#[derive(Debug, Default)]
pub(crate) struct Import {
    /// Offers new here or newly Used, to write, each with what it was here before.
    pub written: Vec<Imported>,
    /// Imported offers already handed out here.
    pub already_here: usize,
    /// Imported offers whose slot an offer handed out here holds: not imported.
    pub conflicts: Vec<CachedOffer>,
}

/// One offer an import made Used here, and how to take that back
/// ([`OfferCache::undo_import`]) if its record cannot be written.
#[derive(Debug)]
pub(crate) struct Imported {
    pub offer: CachedOffer,
    before: BeforeImport,
}

/// What an imported offer was here before the import.
#[derive(Debug)]
enum BeforeImport {
    /// Known here, Ready or Pending, with this label and hand-out time.
    Known {
        state: OfferState,
        label: Option<String>,
        handed_out_at: Option<Duration>,
    },
    /// New here; it took its slot from this Ready or Pending offer of ours, if any.
    New { made_way: Option<Box<CachedOffer>> },
}

impl Imported {
    /// The Ready or Pending offer of ours that made way for it, if any.
    #[cfg(test)]
    pub fn made_way(&self) -> Option<&CachedOffer> {
        match &self.before {
            BeforeImport::New { made_way } => made_way.as_deref(),
            BeforeImport::Known { .. } => None,
        }
    }
}

/// What a maintenance tick found to do.
#[derive(Debug, Default)]
pub(crate) struct Maintenance {
    /// Handed-out offers that expired: no longer refreshed or given out, kept for the
    /// retention. Announced once per process.
    pub expired: Vec<CachedOffer>,
    /// Offers removed: unused ones that expired, handed-out ones expired for the retention.
    pub removed: Vec<CachedOffer>,
    /// Pending offers the server never confirmed in time; removed, their slots re-requested.
    pub abandoned: Vec<CachedOffer>,
    /// Handed-out offers whose invoice is getting old and must be rebuilt and sent.
    pub rebuild: Vec<OfferId>,
    /// Handed-out offers about to expire, announced now.
    pub expiring: Vec<CachedOffer>,
    /// Handed-out offers whose last confirmed invoice is older than the refresh interval and
    /// the margin, with why no fresh one was confirmed; announced once until one is.
    pub refresh_failed: Vec<(CachedOffer, String)>,
    /// Offers whose announcements changed (stored with them, so each is made once): to write.
    pub announced: Vec<CachedOffer>,
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
            slot_sequence,
        }
    }

    pub fn offers(&self) -> &[CachedOffer] {
        &self.offers
    }

    pub fn get(&self, id: OfferId) -> Option<&CachedOffer> {
        self.offers.iter().find(|offer| offer.id() == id)
    }

    fn get_mut(&mut self, id: OfferId) -> Option<&mut CachedOffer> {
        self.offers.iter_mut().find(|offer| offer.id() == id)
    }

    /// The slots whose `OfferPathsRequest` is under way.
    pub fn requested_slots(&self) -> Vec<(PublicKey, u16)> {
        self.requests.keys().copied().collect()
    }

    /// How reachable `server` is; servers no longer configured never are.
    pub fn reachability(&self, server: &PublicKey) -> Reachability {
        self.reachability
            .get(server)
            .copied()
            .unwrap_or(Reachability::Unreachable)
    }

    /// Records whether `server` can be talked to. Leaving `Connected` forgets its outstanding
    /// requests: their replies could not reach us, and their share goes to other servers
    /// until it is back; lost with the connection (`Unreachable`), their backoff is kept for
    /// the server's next requests, while a stop (`Connecting`) starts afresh. Unknown servers
    /// are ignored.
    pub fn set_reachability(&mut self, server: PublicKey, reachability: Reachability) {
        let Some(current) = self.reachability.get_mut(&server) else {
            return;
        };
        *current = reachability;
        if reachability != Reachability::Unreachable {
            self.unreachable_since.remove(&server);
        }
        if reachability == Reachability::Connected {
            return;
        }
        let mut lost = self.lost_requests.remove(&server);
        self.requests.retain(|(of, _), request| {
            if *of != server {
                return true;
            }
            let kept = lost.get_or_insert_with(|| request.clone());
            kept.attempts = kept.attempts.max(request.attempts);
            kept.retry_at = kept.retry_at.max(request.retry_at);
            false
        });
        if let (Reachability::Unreachable, Some(lost)) = (reachability, lost) {
            self.lost_requests.insert(server, lost);
        }
    }

    /// `server` is connected again after a connection that worked (it answered, or stayed up
    /// a while): the requests lost with it are asked again at once, as first attempts.
    pub fn forget_lost_requests(&mut self, server: &PublicKey) {
        self.lost_requests.remove(server);
    }

    /// Notes that `server`, unreachable, was found so at `now` (monotonic); the first note of a
    /// spell counts.
    pub fn note_unreachable(&mut self, server: PublicKey, now: Duration) {
        if self.reachability(&server) == Reachability::Unreachable {
            self.unreachable_since.entry(server).or_insert(now);
        }
    }

    /// Whether `server` is one of the config's: offers of others are kept while they live,
    /// but nothing is sent for them.
    fn is_configured(&self, server: &PublicKey) -> bool {
        self.reachability.contains_key(server)
    }

    fn is_connected(&self, server: &PublicKey) -> bool {
        self.reachability(server) == Reachability::Connected
    }

    /// Whether a Ready offer is to be replaced: older than the policy allows, or about to
    /// expire (a replacement made now lasts at least `min_paths_lifetime`, longer than the
    /// notice, so it is fresh: what an expiring handed-out offer needs to be announced).
    fn is_stale_ready(&self, offer: &CachedOffer, now: Duration) -> bool {
        offer.created_at.saturating_add(self.policy.ready_max_age) <= now
            || offer.is_expiring(self.policy.expiring_notice, now)
    }

    /// Fresh Ready, Pending and requested offers of `server`: what it contributes to the target.
    fn underway(&self, server: &PublicKey, now: Duration) -> usize {
        let offers = self
            .offers
            .iter()
            .filter(|o| o.server == *server)
            .filter(|o| match o.state {
                OfferState::Ready => !self.is_stale_ready(o, now) && !o.is_expired(now),
                OfferState::Pending => true,
                OfferState::Used => false,
            })
            .count();
        offers + self.requests.keys().filter(|(of, _)| of == server).count()
    }

    /// The `OfferPathsRequest`s to send now: retries that are due, then a new slot for each
    /// missing offer, on the connected server furthest below its share. Never two requests
    /// per slot.
    pub fn plan_requests(&mut self, now: Time) -> Vec<PlannedRequest> {
        let mut planned = Vec::new();
        let policy = self.policy.clone();
        for ((server, slot), request) in self.requests.iter_mut() {
            if request.retry_at <= now.monotonic {
                request.attempts += 1;
                request.retry_at = now.monotonic + retry_delay(&policy, request.attempts);
                planned.push(PlannedRequest {
                    server: *server,
                    slot: *slot,
                    attempt: request.attempts,
                });
            }
        }
        // Servers not known to be unreachable share the target; a connecting one's share waits
        // for it, an unreachable one's is spread over the others.
        let live: Vec<PublicKey> = policy
            .servers
            .iter()
            .filter(|server| self.reachability(server) != Reachability::Unreachable)
            .copied()
            .collect();
        if live.is_empty() {
            return planned;
        }
        let target = policy.target_ready as usize;
        let mut load: Vec<(PublicKey, usize, usize)> = live
            .iter()
            .enumerate()
            .map(|(index, server)| {
                let share = target / live.len() + usize::from(index < target % live.len());
                (*server, share, self.underway(server, now.wall))
            })
            .collect();
        let mut missing = target.saturating_sub(load.iter().map(|(_, _, n)| n).sum());
        // Each server's held slots, gathered once: planning many offers stays linear.
        // Candidates before the last one taken stay held while planning, so each server's
        // walk resumes there.
        let mut held: HashMap<PublicKey, (HashSet<u16>, u32)> = HashMap::new();
        // A server whose last requests were lost with a connection waits out their backoff.
        let lost = std::mem::take(&mut self.lost_requests);
        let attempt_of = |server: &PublicKey| lost.get(server).map_or(1, |lost| lost.attempts + 1);
        let may_ask = |server: &PublicKey| {
            lost.get(server)
                .is_none_or(|lost| lost.retry_at <= now.monotonic)
        };
        while missing > 0 {
            let Some((server, _, underway)) = load
                .iter_mut()
                .filter(|(server, share, underway)| {
                    underway < share && self.is_connected(server) && may_ask(server)
                })
                .max_by_key(|(_, share, underway)| *share - *underway)
            else {
                break;
            };
            let (held, next_candidate) = held
                .entry(*server)
                .or_insert_with(|| (self.held_slots(server), 0));
            let Some(slot) = self.free_slot(server, held, next_candidate) else {
                break;
            };
            held.insert(slot);
            *underway += 1;
            missing -= 1;
            let attempts = attempt_of(server);
            self.requests.insert(
                (*server, slot),
                SlotRequest {
                    attempts,
                    retry_at: now.monotonic + retry_delay(&policy, attempts),
                },
            );
            planned.push(PlannedRequest {
                server: *server,
                slot,
                attempt: attempts,
            });
        }
        // Kept for the servers that were not asked: their requests now carry the rest.
        self.lost_requests = lost
            .into_iter()
            .filter(|(server, _)| !planned.iter().any(|request| request.server == *server))
            .collect();
        planned
    }

    /// The slots of `server` that a live offer or an outstanding request holds.
    fn held_slots(&self, server: &PublicKey) -> HashSet<u16> {
        self.offers
            .iter()
            .filter(|o| o.server == *server)
            .map(|o| o.slot)
            .chain(
                self.requests
                    .keys()
                    .filter(|(of, _)| of == server)
                    .map(|(_, slot)| *slot),
            )
            .collect()
    }

    /// The first candidate slot of `server` in its sequence, from the `next_candidate`th on,
    /// that is not `held` (`next_candidate` is left after it); where the range is nearly full,
    /// the first free one after the last candidate tried.
    fn free_slot(
        &self,
        server: &PublicKey,
        held: &HashSet<u16>,
        next_candidate: &mut u32,
    ) -> Option<u16> {
        let range = &self.policy.slot_range;
        // Each held slot hides at most one candidate (two candidates rarely fall on one slot).
        let tries = u32::try_from(held.len())
            .unwrap_or(u32::MAX)
            .saturating_add(32);
        let mut slot = *range.start();
        while *next_candidate < tries {
            slot = self.slot_sequence.candidate(server, *next_candidate, range);
            *next_candidate += 1;
            if !held.contains(&slot) {
                return Some(slot);
            }
        }
        (slot..=*range.end())
            .chain(*range.start()..slot)
            .find(|slot| !held.contains(slot))
    }

    /// Checks an `OfferPaths` reply from `server` before any offer is built from it.
    pub fn check_offer_paths(
        &self,
        server: PublicKey,
        slot: u16,
        reply_path_expiry: Duration,
        paths: &[BlindedMessagePath],
        paths_expiry: Option<Duration>,
        now: Duration,
    ) -> Result<(), OfferPathsRejection> {
        if reply_path_expiry < now {
            return Err(OfferPathsRejection::ReplyPathExpired);
        }
        if !self.requests.contains_key(&(server, slot)) {
            return Err(OfferPathsRejection::SlotNotRequested);
        }
        if paths.is_empty() {
            return Err(OfferPathsRejection::NoPaths);
        }
        if paths.len() > MAX_OFFER_PATHS {
            return Err(OfferPathsRejection::TooManyPaths { count: paths.len() });
        }
        if let Some(expiry) = paths_expiry {
            let required = now.saturating_add(self.policy.min_paths_lifetime);
            if expiry < required {
                return Err(OfferPathsRejection::ExpiresTooSoon {
                    lifetime: expiry.saturating_sub(now),
                    required: self.policy.min_paths_lifetime,
                });
            }
        }
        if self.offers.iter().any(|o| o.offer.paths() == paths) {
            return Err(OfferPathsRejection::DuplicatePaths);
        }
        Ok(())
    }

    /// Takes `offers` as they are on disk now, keeping what this process knew of those it
    /// already had (when their invoices were sent, and how that went). Pending offers and
    /// outstanding requests are dropped: they were this process's alone.
    pub fn reload(&mut self, offers: Vec<CachedOffer>) {
        let known = std::mem::take(&mut self.offers);
        self.requests.clear();
        self.offers = offers
            .into_iter()
            .map(|mut offer| {
                if let Some(old) = known.iter().find(|old| {
                    old.id() == offer.id()
                        && old.invoice.invoice.created_at() == offer.invoice.invoice.created_at()
                }) {
                    offer.invoice_sent_at = old.invoice_sent_at;
                    offer.refresh_due_at = old.refresh_due_at;
                    if old.invoice_confirmed_at == offer.invoice_confirmed_at {
                        offer.stale_at = old.stale_at;
                    }
                    // Not a rebuild under way: its job was dropped if the dir was not ours.
                    offer.delivery = Delivery {
                        rebuild_under_way: false,
                        ..old.delivery.clone()
                    };
                }
                offer
            })
            .collect();
    }

    /// Records a freshly built offer whose invoice is about to be sent; ends its slot's request.
    pub fn insert_pending(&mut self, mut offer: CachedOffer) {
        self.requests.remove(&(offer.server, offer.slot));
        self.lost_requests.remove(&offer.server);
        offer.refresh_due_at = Some(
            offer
                .pending_since
                .saturating_add(self.policy.invoice_refresh_interval),
        );
        self.offers.push(offer);
    }

    /// Applies a `StaticInvoicePersisted` for the invoice of `id` created at `invoice_created_at`.
    pub fn invoice_persisted(
        &mut self,
        id: OfferId,
        invoice_created_at: Duration,
        now: Time,
    ) -> Confirmation {
        let stale_after = self.stale_after();
        let Some(offer) = self.get_mut(id) else {
            return Confirmation::Ignored;
        };
        let current = offer.invoice.invoice.created_at();
        if invoice_created_at < current && offer.invoice_sent_at.is_some() {
            // The caller sends the current one now, so it is not sent twice. Its count of
            // sends stays: it may only have waited in the outbox for this very answer, and
            // counting a send that never left would bring the failure notice forward.
            offer.invoice_confirmed = false;
            offer.invoice_sent_at = Some(now.monotonic);
            return Confirmation::Superseded;
        }
        if offer.invoice_confirmed || current != invoice_created_at {
            return Confirmation::Ignored;
        }
        let before = ConfirmedBefore {
            at: offer.invoice_confirmed_at,
            stale_at: offer.stale_at,
            failure_announced: offer.refresh_failure_announced,
        };
        offer.invoice_confirmed = true;
        offer.invoice_confirmed_at = Some(now.wall);
        offer.stale_at = Some(now.monotonic.saturating_add(stale_after));
        offer.delivery = Delivery {
            confirmed_before: Some(before),
            ..Delivery::default()
        };
        offer.refresh_failure_announced = false;
        if offer.state != OfferState::Pending {
            return Confirmation::Refreshed;
        }
        offer.state = OfferState::Ready;
        Confirmation::NowReady {
            replaced: self.drop_excess_ready(Some(id), now.wall),
        }
    }

    /// Keeps at most `target` Ready offers, dropping those of unreachable servers first, then
    /// stale ones, then the oldest; never `keep`.
    fn drop_excess_ready(&mut self, keep: Option<OfferId>, now: Duration) -> Vec<CachedOffer> {
        let mut dropped = Vec::new();
        loop {
            let ready = self
                .offers
                .iter()
                .filter(|o| o.state == OfferState::Ready)
                .count();
            if ready <= self.policy.target_ready as usize {
                return dropped;
            }
            let victim = self
                .offers
                .iter()
                .enumerate()
                .filter(|(_, o)| o.state == OfferState::Ready && Some(o.id()) != keep)
                .min_by_key(|(_, o)| {
                    (
                        self.reachability(&o.server) != Reachability::Unreachable,
                        !self.is_stale_ready(o, now),
                        o.created_at,
                    )
                })
                .map(|(index, _)| index);
            match victim {
                Some(index) => dropped.push(self.offers.remove(index)),
                None => return dropped,
            }
        }
    }

    /// Marks a live Ready offer as Used with `label` and returns it: the newest of a server
    /// that can be reached, else the newest of any.
    pub fn take(&mut self, label: Option<String>, now: Duration) -> Option<CachedOffer> {
        self.take_where(label, now, |_| true)
    }

    /// [`Self::take`] among the Ready offers that `eligible` accepts.
    fn take_where(
        &mut self,
        label: Option<String>,
        now: Duration,
        eligible: impl Fn(&CachedOffer) -> bool,
    ) -> Option<CachedOffer> {
        let index = self
            .offers
            .iter()
            .enumerate()
            .filter(|(_, o)| o.state == OfferState::Ready && !o.is_expired(now) && eligible(o))
            .max_by_key(|(_, o)| (self.reachability(&o.server), o.created_at))
            .map(|(index, _)| index)?;
        let offer = &mut self.offers[index];
        offer.state = OfferState::Used;
        offer.label = label;
        offer.handed_out_at = Some(now);
        Some(offer.clone())
    }

    /// The live offer first handed out under `label` that is not about to expire; else the
    /// newest Ready offer, handed out under `label` now, one not about to expire itself if the
    /// label has offers already; else, of the label's offers about to expire, the one that
    /// lasts longest, which still works until then, with its expiry to be announced again
    /// once a fresh offer can take its place (the app asked for a replacement and got none).
    /// So the answer is the same at every call until a fresher offer can take over: never a
    /// new hand-out per call.
    pub fn offer_for(&mut self, label: &str, now: Duration) -> Option<(CachedOffer, Pick)> {
        let (expiring, lasting): (Vec<&CachedOffer>, Vec<&CachedOffer>) = self
            .offers
            .iter()
            .filter(|o| o.state == OfferState::Used && !o.is_expired(now))
            .filter(|o| o.label.as_deref() == Some(label))
            .partition(|o| o.is_expiring(self.policy.expiring_notice, now));
        if let Some(offer) = lasting
            .into_iter()
            .min_by_key(|o| (o.handed_out_at, o.slot))
        {
            return Some((offer.clone(), Pick::Unchanged));
        }
        let last_resort = expiring
            .into_iter()
            .max_by_key(|o| (o.expires_at(), o.handed_out_at))
            .map(|o| o.id());
        let label_has_offers = last_resort.is_some();
        let notice = self.policy.expiring_notice;
        if let Some(fresh) = self.take_where(Some(label.to_string()), now, |ready| {
            // A replacement about to expire itself would be replaced at the next call.
            !label_has_offers || !ready.is_expiring(notice, now)
        }) {
            return Some((fresh, Pick::HandedOut));
        }
        let offer = self.get_mut(last_resort?)?;
        let pick = match std::mem::take(&mut offer.expiry_announced) {
            true => Pick::NoticeOwed,
            false => Pick::Unchanged,
        };
        Some((offer.clone(), pick))
    }

    /// Handed-out offers of another install of this wallet's (a backup, another device), merged
    /// so that none is handed out again and none loses its slot. An offer known here as Ready
    /// becomes Used with the book's label; one already Used here stays as it is; a new one
    /// takes its slot from a Ready offer or a request of ours there, which make way, but never
    /// from an offer handed out here (the server holds one invoice per slot: one of the two is
    /// already broken, and ours is the one this install kept refreshing).
    pub fn import(&mut self, book: Vec<CachedOffer>) -> Import {
        let mut import = Import::default();
        for mut offer in book.into_iter().filter(|o| o.state == OfferState::Used) {
            let slot = (offer.server, offer.slot);
            if let Some(known) = self.get_mut(offer.id()) {
                if known.state == OfferState::Used {
                    import.already_here += 1;
                    continue;
                }
                let before = BeforeImport::Known {
                    state: known.state,
                    label: known.label.take(),
                    handed_out_at: known.handed_out_at,
                };
                known.state = OfferState::Used;
                known.label = offer.label;
                known.handed_out_at = offer.handed_out_at;
                import.written.push(Imported {
                    offer: known.clone(),
                    before,
                });
                continue;
            }
            let mut made_way = None;
            if let Some(index) = self.offers.iter().position(|o| (o.server, o.slot) == slot) {
                if self.offers[index].state == OfferState::Used {
                    import.conflicts.push(offer);
                    continue;
                }
                made_way = Some(Box::new(self.offers.remove(index)));
            }
            self.requests.remove(&slot);
            offer.invoice_sent_at = None;
            offer.expiry_announced = false;
            offer.expired_announced = false;
            offer.refresh_failure_announced = false;
            import.written.push(Imported {
                offer: offer.clone(),
                before: BeforeImport::New { made_way },
            });
            self.offers.push(offer);
        }
        import
    }

    /// Takes back the import of `imported`, whose record could not be written: the offer is
    /// again what it was here before (or gone, and the offer that made way for it back), so
    /// that memory never holds an import the disk does not. Its invoice stays whatever it is
    /// now (a refresh may have replaced it meanwhile). The offer that made way comes back
    /// Pending with its invoice unconfirmed: the server may have been sent the imported
    /// offer's invoice for that slot meanwhile, so it is sent again, and the offer is Ready
    /// once it is confirmed, waiting for that from `now` (monotonic), as a Pending offer does from
    /// when it was built. Returns what the slot holds now (`None`: nothing on disk, as a
    /// Pending offer is not written), for the caller to write over whatever a refresh or an
    /// announcement may have written of the import meanwhile.
    pub fn undo_import(&mut self, imported: Imported, now: Duration) -> Option<CachedOffer> {
        let id = imported.offer.id();
        match imported.before {
            BeforeImport::Known {
                state,
                label,
                handed_out_at,
            } => {
                let offer = self.get_mut(id)?;
                offer.state = state;
                offer.label = label;
                offer.handed_out_at = handed_out_at;
                Some(offer.clone()).filter(|offer| offer.state != OfferState::Pending)
            }
            BeforeImport::New { made_way } => {
                self.offers.retain(|offer| offer.id() != id);
                if let Some(mut offer) = made_way.map(|offer| *offer) {
                    offer.state = OfferState::Pending;
                    offer.invoice_confirmed = false;
                    offer.invoice_sent_at = None;
                    offer.pending_since = now;
                    self.offers.push(offer);
                }
                None
            }
        }
    }

    /// Handed-out offers, for a book another install can import.
    pub fn handed_out(&self) -> impl Iterator<Item = &CachedOffer> {
        self.offers.iter().filter(|o| o.state == OfferState::Used)
    }

    /// Reverts [`Self::take`] when marking the offer Used could not be persisted.
    pub fn untake(&mut self, id: OfferId) {
        if let Some(offer) = self.get_mut(id) {
            offer.state = OfferState::Ready;
            offer.label = None;
            offer.handed_out_at = None;
        }
    }

    /// Unconfirmed invoices of live offers to send again to their connected servers, marked
    /// sent now: all of `afresh`'s (a server connected again after a connection that worked,
    /// or for the first time in a run), otherwise those never sent and those unanswered for
    /// the policy's resend interval, doubled for each send already unanswered (capped). A
    /// server that drops every connection unanswered thus gets each invoice at that pace, not
    /// on each connection.
    pub fn plan_resends(&mut self, now: Time, afresh: Option<PublicKey>) -> Vec<OfferId> {
        let policy = &self.policy;
        let reachability = &self.reachability;
        let connected =
            |server: &PublicKey| reachability.get(server) == Some(&Reachability::Connected);
        self.offers
            .iter_mut()
            .filter(|o| !o.invoice_confirmed && connected(&o.server) && !o.is_expired(now.wall))
            .filter(|o| {
                afresh == Some(o.server)
                    || o.invoice_sent_at.is_none_or(|sent| {
                        sent.saturating_add(resend_delay(policy, o.delivery.sends)) <= now.monotonic
                    })
            })
            .map(|o| {
                o.invoice_sent_at = Some(now.monotonic);
                o.delivery.sends = o.delivery.sends.saturating_add(1);
                o.id()
            })
            .collect()
    }

    /// Why this process failed to get a fresh invoice of `offer` confirmed, if it tried long
    /// enough to say: a server that has not answered several sends of it, one unreachable for
    /// the margin while the client ran, or an invoice that could not be built or written. A
    /// process that has just started (after a night off, say) has not failed yet: its first
    /// sends may well be confirmed.
    fn refresh_failure(&self, offer: &CachedOffer, now: Time) -> Option<String> {
        if let Some(problem) = &offer.delivery.problem {
            return Some(problem.clone());
        }
        if !self.is_configured(&offer.server) {
            return Some(format!(
                "server {} is no longer configured: its invoice is not refreshed",
                offer.server
            ));
        }
        match self.reachability(&offer.server) {
            Reachability::Connected
                if !offer.invoice_confirmed && offer.delivery.sends >= SENDS_BEFORE_FAILURE =>
            {
                Some(format!(
                    "server {} has not confirmed the refreshed invoice, sent {} times",
                    offer.server, offer.delivery.sends
                ))
            }
            Reachability::Unreachable
                if self
                    .unreachable_since
                    .get(&offer.server)
                    .is_some_and(|since| {
                        since.saturating_add(self.policy.refresh_failure_margin) <= now.monotonic
                    }) =>
            {
                Some(format!(
                    "server {} has been unreachable for over {} minutes",
                    offer.server,
                    self.policy.refresh_failure_margin.as_secs() / 60
                ))
            }
            _ => None,
        }
    }

    /// Removes unused offers that expired and handed-out ones expired for longer than the
    /// retention, abandons Pending offers unconfirmed for too long, and lists handed-out offers
    /// to announce and those whose invoice must be rebuilt (on configured servers only).
    pub fn maintain(&mut self, now: Time) -> Maintenance {
        let retention = self.policy.expired_retention;
        let (removed, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.offers)
            .into_iter()
            .partition(|o| match o.state {
                OfferState::Used => o
                    .expires_at()
                    .is_some_and(|expiry| expiry.saturating_add(retention) <= now.wall),
                OfferState::Ready | OfferState::Pending => o.is_expired(now.wall),
            });
        let unconfirmed_deadline = self.policy.pending_max_age;
        let (abandoned, live): (Vec<_>, Vec<_>) = live.into_iter().partition(|o| {
            o.state == OfferState::Pending
                && o.pending_since.saturating_add(unconfirmed_deadline) <= now.monotonic
        });
        self.offers = live;
        // Offers loaded from their records get their deadlines on the monotonic clock now,
        // once: from here on a wall clock that jumps either way moves neither.
        let (interval, stale_after) = (self.policy.invoice_refresh_interval, self.stale_after());
        for offer in self.offers.iter_mut() {
            if offer.refresh_due_at.is_none() {
                offer.refresh_due_at = Some(offer.refresh_due(interval, now));
            }
            if offer.stale_at.is_none() {
                offer.stale_at = Some(offer.stale_deadline(stale_after, now));
            }
        }
        let mut maintenance = Maintenance {
            removed,
            abandoned,
            ..Default::default()
        };
        let notice = self.policy.expiring_notice;
        // An offer about to expire is announced once a fresh one can take its place: told
        // before, the app would republish the same offer (`offer_for` has nothing fresher).
        let replacement_ready = self.offers.iter().any(|o| {
            o.state == OfferState::Ready
                && !o.is_expired(now.wall)
                && !o.is_expiring(notice, now.wall)
        });
        for offer in self.offers.iter_mut() {
            if offer.state != OfferState::Used {
                continue;
            }
            if offer.is_expired(now.wall) {
                if !offer.expired_announced {
                    offer.expired_announced = true;
                    maintenance.expired.push(offer.clone());
                    maintenance.announced.push(offer.clone());
                }
                continue;
            }
            if offer.expired_announced {
                // Live again (the clock was put right): a later expiry is announced anew.
                offer.expired_announced = false;
                offer.expiry_announced = false;
                maintenance.announced.push(offer.clone());
            }
            if offer.is_expiring(notice, now.wall) && !offer.expiry_announced && replacement_ready {
                offer.expiry_announced = true;
                maintenance.expiring.push(offer.clone());
                maintenance.announced.push(offer.clone());
            }
        }
        for offer in self.offers.iter_mut() {
            if offer.invoice_confirmed
                && !offer.delivery.rebuild_under_way
                && offer.state == OfferState::Used
                && !offer.is_expired(now.wall)
                && self.reachability.contains_key(&offer.server)
                && offer.invoice_due(interval, now)
            {
                offer.delivery.rebuild_under_way = true;
                maintenance.rebuild.push(offer.id());
            }
        }
        let failed: Vec<(usize, String)> = (0..self.offers.len())
            .filter_map(|index| {
                let offer = &self.offers[index];
                let stale = offer.state == OfferState::Used
                    && !offer.is_expired(now.wall)
                    && !offer.refresh_failure_announced
                    && offer.stale_deadline(stale_after, now) <= now.monotonic;
                stale
                    .then(|| self.refresh_failure(offer, now))
                    .flatten()
                    .map(|reason| (index, reason))
            })
            .collect();
        for (index, reason) in failed {
            let offer = &mut self.offers[index];
            offer.refresh_failure_announced = true;
            maintenance.refresh_failed.push((offer.clone(), reason));
            maintenance.announced.push(offer.clone());
        }
        maintenance
    }

    /// How old a handed-out offer's last confirmation may get before the app hears its refresh
    /// failed: the refresh interval and the margin.
    fn stale_after(&self) -> Duration {
        self.policy
            .invoice_refresh_interval
            .saturating_add(self.policy.refresh_failure_margin)
    }

    /// Notes why refreshing `id`'s invoice failed, for the app's
    /// [`Maintenance::refresh_failed`].
    pub fn refresh_problem(&mut self, id: OfferId, problem: String) {
        if let Some(offer) = self.get_mut(id) {
            offer.delivery.problem = Some(problem);
            offer.delivery.rebuild_under_way = false;
        }
    }

    /// Handed-out live offers of configured servers whose invoice is not fresh and confirmed
    /// at `now`, and why: what a sync waits for.
    pub fn unrefreshed(&self, now: Time) -> Vec<(&CachedOffer, Unrefreshed)> {
        self.handed_out()
            .filter(|o| self.is_configured(&o.server) && !o.is_expired(now.wall))
            .filter_map(|o| {
                let why = if let Some(problem) = &o.delivery.problem {
                    Unrefreshed::Failed(problem.clone())
                } else if !o.invoice_confirmed {
                    Unrefreshed::Unconfirmed {
                        sends: o.delivery.sends,
                    }
                } else if o.invoice_due(self.policy.invoice_refresh_interval, now) {
                    Unrefreshed::Due
                } else {
                    return None;
                };
                Some((o, why))
            })
            .collect()
    }

    /// Takes back the server's confirmation of `id`'s invoice created at `invoice_created_at`,
    /// which could not be written: the invoice is sent again, and the next confirmation
    /// written then. An offer that was Ready by it is Pending again, as the disk knows nothing
    /// of it; one handed out since keeps its state.
    pub fn confirmation_unwritten(
        &mut self,
        id: OfferId,
        invoice_created_at: Duration,
        problem: String,
    ) {
        let Some(offer) = self.get_mut(id) else {
            return;
        };
        if !offer.invoice_confirmed || offer.invoice.invoice.created_at() != invoice_created_at {
            return;
        }
        offer.invoice_confirmed = false;
        offer.delivery.problem = Some(problem);
        if let Some(before) = offer.delivery.confirmed_before.take() {
            offer.invoice_confirmed_at = before.at;
            offer.stale_at = before.stale_at;
            offer.refresh_failure_announced = before.failure_announced;
        }
        if offer.state == OfferState::Ready {
            offer.state = OfferState::Pending;
        }
    }

    /// Live offers of configured servers, in every state: their invoices must all be rebuilt
    /// (channels or fees changed).
    pub fn live_offers(&self, now: Duration) -> Vec<OfferId> {
        self.offers
            .iter()
            .filter(|o| self.is_configured(&o.server) && !o.is_expired(now))
            .map(|o| o.id())
            .collect()
    }

    /// Sets `id`'s invoice back to an older one, confirmed: for benchmarks that repeat one
    /// refresh.
    #[cfg(feature = "testing")]
    pub fn put_back_invoice(&mut self, id: OfferId, invoice: BuiltInvoice) {
        if let Some(offer) = self.get_mut(id) {
            offer.invoice = invoice;
            offer.invoice_confirmed = true;
        }
    }

    /// The creation time for a new invoice of `id` built at `now`: a whole second after both
    /// its current invoice and any invoice begun before for it (`None`: no such offer).
    pub fn reserve_invoice_time(&mut self, id: OfferId, now: Duration) -> Option<Duration> {
        let offer = self.get_mut(id)?;
        let after = offer
            .invoice_time_reserved
            .unwrap_or_default()
            .max(offer.invoice.invoice.created_at());
        let created_at = now.max(Duration::from_secs(after.as_secs() + 1));
        offer.invoice_time_reserved = Some(created_at);
        Some(created_at)
    }

    /// Whether an invoice of `id` created at `created_at` would be newer than its current one.
    pub fn is_newer_invoice(&self, id: OfferId, created_at: Duration) -> bool {
        self.get(id)
            .is_some_and(|offer| offer.invoice.invoice.created_at() < created_at)
    }

    /// Installs a newly built invoice for `id`, sent at `now` (monotonic), unconfirmed until
    /// the server says so; never one older than the current one (a slower build of older
    /// hints). Returns whether it was installed.
    pub fn replace_invoice(&mut self, id: OfferId, invoice: BuiltInvoice, now: Duration) -> bool {
        if !self.is_newer_invoice(id, invoice.invoice.created_at()) {
            return false;
        }
        let interval = self.policy.invoice_refresh_interval;
        if let Some(offer) = self.get_mut(id) {
            offer.invoice = invoice;
            offer.invoice_confirmed = false;
            offer.invoice_sent_at = Some(now);
            offer.refresh_due_at = Some(now.saturating_add(interval));
            offer.delivery.sends = 1;
            offer.delivery.problem = None;
            offer.delivery.rebuild_under_way = false;
        }
        true
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{offer_fixture, pubkey, server_key, OfferFixture};

    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn policy(target_ready: u16) -> CachePolicy {
        CachePolicy {
            servers: vec![server_key()],
            target_ready,
            ready_max_age: 2 * HOUR,
            pending_max_age: 2 * HOUR,
            invoice_refresh_interval: 2 * HOUR,
            min_paths_lifetime: 90 * DAY,
            first_retry_after: Duration::from_secs(15),
            max_retry_after: Duration::from_secs(900),
            invoice_resend_after: Duration::from_secs(5),
            max_invoice_resend_after: HOUR,
            refresh_failure_margin: HOUR,
            expiring_notice: 14 * DAY,
            expired_retention: 90 * DAY,
            slot_range: 0..=u16::MAX,
        }
    }

    /// The lowest free slot each time, which keeps the slots of these tests readable.
    fn lowest_free() -> SlotSequence {
        SlotSequence::InOrder
    }

    /// A cache whose only server is connected.
    fn connected(policy: CachePolicy, offers: Vec<CachedOffer>) -> OfferCache {
        let mut cache = OfferCache::new(policy, offers, lowest_free());
        cache.set_reachability(server_key(), Reachability::Connected);
        cache
    }

    fn t0() -> Duration {
        Duration::from_secs(1_800_000_000)
    }

    /// `wall` by both clocks, as when the wall clock never jumped.
    fn at(wall: Duration) -> Time {
        Time {
            wall,
            monotonic: wall,
        }
    }

    /// Requests `slot`, answers it and confirms the invoice, as the protocol would.
    fn fill(cache: &mut OfferCache, fixture: &OfferFixture, now: Duration) -> CachedOffer {
        let planned = cache.plan_requests(at(now));
        let slot = planned
            .first()
            .map(|p| p.slot)
            .unwrap_or_else(|| cache.requested_slots()[0].1);
        let offer = fixture.cached(slot, now, Some(now + 365 * DAY));
        cache
            .check_offer_paths(
                server_key(),
                slot,
                now + HOUR,
                offer.offer.paths(),
                offer.expires_at(),
                now,
            )
            .unwrap();
        cache.insert_pending(offer.clone());
        assert!(matches!(
            cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(now)),
            Confirmation::NowReady { .. }
        ));
        cache.get(offer.id()).unwrap().clone()
    }

    fn keyed(key: u8) -> OfferCache {
        let mut cache = OfferCache::new(policy(10), vec![], SlotSequence::Keyed([key; 32]));
        cache.set_reachability(server_key(), Reachability::Connected);
        cache
    }

    fn slots_of(planned: &[PlannedRequest]) -> std::collections::HashSet<u16> {
        planned.iter().map(|p| p.slot).collect()
    }

    #[test]
    fn each_install_has_slots_of_its_own_spread_over_the_range() {
        let first = slots_of(&keyed(1).plan_requests(at(t0())));
        let reinstalled = slots_of(&keyed(2).plan_requests(at(t0())));
        assert_eq!((first.len(), reinstalled.len()), (10, 10), "distinct");
        assert!(
            first.is_disjoint(&reinstalled),
            "another install's key, other slots: {first:?} {reinstalled:?}"
        );
        assert!(
            first.iter().any(|&s| s > 32_768) && first.iter().any(|&s| s < 32_768),
            "spread over the whole range: {first:?}"
        );
        assert!(
            first.is_disjoint(&(0..10).collect()),
            "not where the lowest free slots would be: {first:?}"
        );
        assert_eq!(
            slots_of(&keyed(1).plan_requests(at(t0()))),
            first,
            "the same install comes back to the same slots"
        );
    }

    #[test]
    fn an_install_replacing_offers_for_ever_touches_only_as_many_slots_as_it_holds() {
        let fixture = offer_fixture();
        let mut cache = OfferCache::new(policy(2), vec![], SlotSequence::Keyed([3; 32]));
        cache.set_reachability(server_key(), Reachability::Connected);
        let mut touched = std::collections::HashSet::new();
        let mut now = t0();
        let used = {
            let offer = fill(&mut cache, &fixture, now);
            touched.insert(offer.slot);
            cache.take(Some("bio".into()), now).unwrap()
        };
        // A month of Ready offers going stale every two hours and being replaced.
        for _ in 0..(30 * 12) {
            now += 2 * HOUR;
            for planned in cache.plan_requests(at(now)) {
                let offer = fixture.cached(planned.slot, now, None);
                touched.insert(planned.slot);
                cache.insert_pending(offer.clone());
                cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(now));
            }
        }
        assert_eq!(cache.get(used.id()).unwrap().slot, used.slot, "kept");
        assert!(
            touched.len() <= 5,
            "1 handed out, 2 Ready and their 2 replacements, yet {} slots: {touched:?}",
            touched.len()
        );
    }

    #[test]
    fn slots_stay_in_the_configured_range_and_a_full_range_requests_no_more() {
        let fixture = offer_fixture();
        let mut policy = policy(6);
        policy.slot_range = 100..=104;
        let mut used = fixture.cached(102, t0(), None);
        used.state = OfferState::Used;
        let mut cache = OfferCache::new(policy, vec![used], SlotSequence::Keyed([5; 32]));
        cache.set_reachability(server_key(), Reachability::Connected);
        let mut slots: Vec<u16> = cache
            .plan_requests(at(t0()))
            .iter()
            .map(|p| p.slot)
            .collect();
        slots.sort();
        assert_eq!(slots, vec![100, 101, 103, 104], "the range holds four more");
        assert!(cache.plan_requests(at(t0())).is_empty());
    }

    #[test]
    fn an_imported_book_never_overwrites_a_handed_out_offer_and_is_never_handed_out_again() {
        let fixture = offer_fixture();
        let used = |slot, label: &str| {
            let mut offer = fixture.cached(slot, t0(), None);
            offer.state = OfferState::Used;
            offer.label = Some(label.into());
            offer
        };
        let ready_here = fixture.cached(1, t0(), None);
        let mut cache = connected(
            policy(4),
            vec![
                ready_here.clone(),
                used(2, "here"),
                fixture.cached(3, t0(), None),
            ],
        );
        cache.plan_requests(at(t0()));
        assert!(cache.requested_slots().contains(&(server_key(), 0)));
        let mut known_as_ready = ready_here.clone();
        known_as_ready.state = OfferState::Used;
        known_as_ready.label = Some("elsewhere".into());
        let book = vec![
            known_as_ready,
            used(2, "clash"),
            used(3, "takes a Ready offer's slot"),
            used(0, "takes a requested slot"),
            fixture.cached(9, t0(), None),
        ];
        let import = cache.import(book);
        assert_eq!(import.written.len(), 3);
        assert_eq!(
            import.conflicts.len(),
            1,
            "slot 2 stays the handed-out offer's"
        );
        assert_eq!(
            import
                .written
                .iter()
                .filter_map(|imported| imported.made_way())
                .map(|o| o.slot)
                .collect::<Vec<_>>(),
            vec![3]
        );
        assert!(cache.get(ready_here.id()).unwrap().state == OfferState::Used);
        assert!(!cache.requested_slots().contains(&(server_key(), 0)));
        assert!(
            cache.offers().iter().all(|o| o.slot != 9),
            "Ready offers of the book are not imported"
        );
        assert!(
            cache.take(None, t0()).is_none(),
            "nothing Ready is left to hand out"
        );
        let mut slots: Vec<u16> = cache.offers().iter().map(|o| o.slot).collect();
        slots.sort();
        assert_eq!(slots, vec![0, 1, 2, 3], "one offer per slot");
        assert_eq!(cache.import(cache.offers().to_vec()).already_here, 4);
    }

    #[test]
    fn an_import_taken_back_leaves_every_offer_as_it_was() {
        let fixture = offer_fixture();
        let ready_here = {
            let mut offer = fixture.cached(1, t0(), None);
            offer.state = OfferState::Ready;
            offer
        };
        let pending_here = fixture.cached(2, t0(), None);
        // Loaded from its record: this process never saw it Pending.
        let loaded_ready = {
            let mut offer = fixture.cached(3, t0(), None);
            offer.state = OfferState::Ready;
            offer.pending_since = Duration::ZERO;
            offer
        };
        let mut cache = connected(
            policy(4),
            vec![ready_here.clone(), pending_here, loaded_ready.clone()],
        );
        let before = |cache: &OfferCache| {
            let mut offers: Vec<_> = cache
                .offers()
                .iter()
                .map(|o| (o.id(), o.slot, o.state, o.label.clone(), o.handed_out_at))
                .collect();
            offers.sort_by_key(|(_, slot, ..)| *slot);
            offers
        };
        let was = before(&cache);
        let mut known_as_ready = ready_here.clone();
        known_as_ready.state = OfferState::Used;
        known_as_ready.label = Some("elsewhere".into());
        known_as_ready.handed_out_at = Some(t0());
        let mut new_in_pending_slot = fixture.cached(2, t0(), None);
        new_in_pending_slot.state = OfferState::Used;
        let mut new_in_ready_slot = fixture.cached(3, t0(), None);
        new_in_ready_slot.state = OfferState::Used;
        let import = cache.import(vec![known_as_ready, new_in_pending_slot, new_in_ready_slot]);
        assert_eq!(import.written.len(), 3);
        assert_ne!(before(&cache), was);
        let slots_now: Vec<Option<OfferState>> = import
            .written
            .into_iter()
            .map(|imported| cache.undo_import(imported, t0()).map(|o| o.state))
            .collect();
        assert_eq!(
            slots_now,
            vec![Some(OfferState::Ready), None, None],
            "to write: the Ready offer; a Pending one is not on disk"
        );
        let state_of_loaded = |cache: &OfferCache| cache.get(loaded_ready.id()).map(|o| o.state);
        assert_eq!(
            state_of_loaded(&cache),
            Some(OfferState::Pending),
            "its invoice to be confirmed again: the slot may hold the imported one's"
        );
        cache.maintain(at(t0() + Duration::from_secs(1)));
        assert_eq!(
            state_of_loaded(&cache),
            Some(OfferState::Pending),
            "waiting for that from now, not abandoned at once"
        );
        let was_but_pending: Vec<_> = was
            .iter()
            .cloned()
            .map(
                |(id, slot, state, label, at)| match id == loaded_ready.id() {
                    true => (id, slot, OfferState::Pending, label, at),
                    false => (id, slot, state, label, at),
                },
            )
            .collect();
        assert_eq!(before(&cache), was_but_pending);
        assert_eq!(
            cache.take(None, t0()).map(|o| o.id()),
            Some(ready_here.id()),
            "Ready again, as on disk"
        );
    }

    #[test]
    fn every_missing_slot_is_requested_at_once_and_only_once() {
        let mut cache = connected(policy(10), vec![]);
        let planned = cache.plan_requests(at(t0()));
        let slots: Vec<u16> = planned.iter().map(|p| p.slot).collect();
        assert_eq!(slots, (0..10).collect::<Vec<_>>());
        assert!(
            cache.plan_requests(at(t0())).is_empty(),
            "no second request per slot in flight"
        );
        assert!(cache
            .plan_requests(at(t0() + Duration::from_secs(14)))
            .is_empty());
    }

    #[test]
    fn unanswered_requests_are_retried_with_backoff_kept_across_reconnections() {
        let mut cache = connected(policy(2), vec![]);
        cache.plan_requests(at(t0()));
        let retry = cache.plan_requests(at(t0() + Duration::from_secs(15)));
        assert_eq!(
            retry,
            vec![
                PlannedRequest {
                    server: server_key(),
                    slot: 0,
                    attempt: 2
                },
                PlannedRequest {
                    server: server_key(),
                    slot: 1,
                    attempt: 2
                }
            ]
        );
        assert!(
            cache
                .plan_requests(at(t0() + Duration::from_secs(44)))
                .is_empty(),
            "second retry waits 30 s"
        );
        assert_eq!(
            cache
                .plan_requests(at(t0() + Duration::from_secs(45)))
                .len(),
            2
        );
        // Backoff is capped.
        let mut later = t0();
        for _ in 0..20 {
            later += Duration::from_secs(900);
            assert_eq!(cache.plan_requests(at(later)).len(), 2);
        }
        // Disconnected: the requests are forgotten, nothing is planned. Connected again at
        // once, nothing either: the lost requests' backoff (15 min by now) holds across the
        // reconnection, so a server that drops every connection is not asked anew on each.
        let next_attempt = 24; // after 23 attempts
        cache.set_reachability(server_key(), Reachability::Unreachable);
        assert!(cache.requested_slots().is_empty());
        assert!(cache.plan_requests(at(later + HOUR)).is_empty());
        cache.set_reachability(server_key(), Reachability::Connected);
        assert!(cache
            .plan_requests(at(later + Duration::from_secs(1)))
            .is_empty());
        // Past it, every missing slot is requested, counting on from the lost attempts.
        let reconnect = cache.plan_requests(at(later + HOUR));
        assert_eq!(
            reconnect
                .iter()
                .map(|p| (p.slot, p.attempt))
                .collect::<Vec<_>>(),
            vec![(0, next_attempt), (1, next_attempt)]
        );
        // After a stop, a start asks at once, as first attempts; so does a reconnection
        // after a connection that worked.
        let later = later + HOUR;
        for afresh in [
            |cache: &mut OfferCache| cache.set_reachability(server_key(), Reachability::Connecting),
            |cache: &mut OfferCache| cache.forget_lost_requests(&server_key()),
        ] {
            cache.set_reachability(server_key(), Reachability::Unreachable);
            afresh(&mut cache);
            cache.set_reachability(server_key(), Reachability::Connected);
            let asked = cache.plan_requests(at(later));
            assert_eq!(
                asked.iter().map(|p| p.attempt).collect::<Vec<_>>(),
                vec![1, 1]
            );
        }
    }

    fn two_servers(target_ready: u16) -> (OfferCache, PublicKey, PublicKey) {
        let (a, b) = (server_key(), pubkey(10));
        let mut policy = policy(target_ready);
        policy.servers = vec![a, b];
        (OfferCache::new(policy, vec![], lowest_free()), a, b)
    }

    fn planned_per_server(planned: &[PlannedRequest], server: PublicKey) -> Vec<u16> {
        planned
            .iter()
            .filter(|p| p.server == server)
            .map(|p| p.slot)
            .collect()
    }

    #[test]
    fn each_server_fills_its_share_with_slots_of_its_own() {
        let (mut cache, a, b) = two_servers(5);
        cache.set_reachability(a, Reachability::Connected);
        let first = cache.plan_requests(at(t0()));
        assert_eq!(
            planned_per_server(&first, a),
            vec![0, 1, 2],
            "the first server's share; the second's waits while it connects"
        );
        cache.set_reachability(b, Reachability::Connected);
        let second = cache.plan_requests(at(t0()));
        assert_eq!(
            planned_per_server(&second, b),
            vec![0, 1],
            "slots per server"
        );
        assert!(planned_per_server(&second, a).is_empty());
        assert!(cache.plan_requests(at(t0())).is_empty());
    }

    #[test]
    fn an_unreachable_servers_share_goes_to_the_others_and_its_offers_stay_its_own() {
        let fixture = offer_fixture();
        let (mut cache, a, b) = two_servers(4);
        cache.set_reachability(a, Reachability::Connected);
        cache.set_reachability(b, Reachability::Connected);
        cache.plan_requests(at(t0()));
        // One offer of b's is Ready, then b goes away before the rest are answered.
        let on_b = fixture.cached_on(b, 0, t0(), None);
        cache.insert_pending(on_b.clone());
        cache.invoice_persisted(on_b.id(), on_b.invoice.invoice.created_at(), at(t0()));
        cache.set_reachability(b, Reachability::Unreachable);
        let planned = cache.plan_requests(at(t0()));
        assert_eq!(
            planned_per_server(&planned, a),
            vec![2, 3],
            "a takes over b's share"
        );
        assert!(planned_per_server(&planned, b).is_empty());
        // a's offers are handed out before b's, newer or not.
        let mut on_a = Vec::new();
        for slot in 0..3 {
            let offer = fixture.cached_on(a, slot, t0() - HOUR, None);
            cache.insert_pending(offer.clone());
            cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(t0()));
            on_a.push(offer.id());
        }
        let taken = cache.take(None, t0()).unwrap();
        assert_eq!((taken.server, on_a.contains(&taken.id())), (a, true));
        // Refilled on a; once a alone has the target Ready, b's spare offer makes way.
        assert_eq!(
            planned_per_server(&cache.plan_requests(at(t0())), a),
            vec![4]
        );
        for slot in [3, 4] {
            let offer = fixture.cached_on(a, slot, t0(), None);
            cache.insert_pending(offer.clone());
            cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(t0()));
        }
        assert!(cache.get(on_b.id()).is_none());
        assert_eq!(
            cache
                .offers()
                .iter()
                .filter(|o| o.state == OfferState::Ready)
                .count(),
            4
        );
        // A handed-out offer of b's stays with b: its resends wait for b.
        let mut used_on_b = fixture.cached_on(b, 1, t0(), None);
        used_on_b.state = OfferState::Used;
        cache.offers.push(used_on_b.clone());
        assert!(cache.plan_resends(at(t0() + HOUR), None).is_empty());
        cache.set_reachability(b, Reachability::Connected);
        assert_eq!(
            cache.plan_resends(at(t0() + HOUR), Some(b)),
            vec![used_on_b.id()]
        );
    }

    #[test]
    fn offer_paths_are_checked_before_anything_is_built() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        cache.plan_requests(at(t0()));
        let candidate = fixture.cached(0, t0(), Some(t0() + 365 * DAY));
        let paths = candidate.offer.paths().to_vec();
        let now = t0();
        assert_eq!(
            cache.check_offer_paths(
                server_key(),
                0,
                now - Duration::from_secs(1),
                &paths,
                None,
                now
            ),
            Err(OfferPathsRejection::ReplyPathExpired)
        );
        assert_eq!(
            cache.check_offer_paths(server_key(), 7, now + HOUR, &paths, None, now),
            Err(OfferPathsRejection::SlotNotRequested)
        );
        assert_eq!(
            cache.check_offer_paths(server_key(), 0, now + HOUR, &[], None, now),
            Err(OfferPathsRejection::NoPaths)
        );
        assert_eq!(
            cache.check_offer_paths(
                server_key(),
                0,
                now + HOUR,
                &vec![paths[0].clone(); MAX_OFFER_PATHS + 1],
                None,
                now
            ),
            Err(OfferPathsRejection::TooManyPaths {
                count: MAX_OFFER_PATHS + 1
            })
        );
        assert!(matches!(
            cache.check_offer_paths(
                server_key(),
                0,
                now + HOUR,
                &paths,
                Some(now + 89 * DAY),
                now
            ),
            Err(OfferPathsRejection::ExpiresTooSoon { .. })
        ));
        assert_eq!(
            cache.check_offer_paths(
                server_key(),
                0,
                now + HOUR,
                &paths,
                Some(now + 90 * DAY),
                now
            ),
            Ok(())
        );
        assert_eq!(
            cache.check_offer_paths(server_key(), 0, now + HOUR, &paths, None, now),
            Ok(()),
            "paths without expiry are accepted"
        );
        cache.insert_pending(candidate);
        assert_eq!(
            cache.check_offer_paths(server_key(), 1, now + HOUR, &paths, None, now),
            Err(OfferPathsRejection::DuplicatePaths)
        );
        assert_eq!(
            cache.check_offer_paths(server_key(), 0, now + HOUR, &paths, None, now),
            Err(OfferPathsRejection::SlotNotRequested),
            "a late duplicate reply for a filled slot"
        );
    }

    #[test]
    fn confirmations_are_matched_by_offer_id_and_applied_once() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        cache.plan_requests(at(t0()));
        let offer = fixture.cached(0, t0(), None);
        let created = offer.invoice.invoice.created_at();
        cache.insert_pending(offer.clone());
        let stranger = fixture.cached(5, t0(), None);
        assert!(matches!(
            cache.invoice_persisted(stranger.id(), created, at(t0())),
            Confirmation::Ignored
        ));
        assert!(
            matches!(
                cache.invoice_persisted(offer.id(), created + Duration::from_secs(1), at(t0())),
                Confirmation::Ignored
            ),
            "confirmation of another invoice"
        );
        assert_eq!(cache.get(offer.id()).unwrap().state, OfferState::Pending);
        assert!(matches!(
            cache.invoice_persisted(offer.id(), created, at(t0())),
            Confirmation::NowReady { .. }
        ));
        assert_eq!(cache.get(offer.id()).unwrap().state, OfferState::Ready);
        assert!(
            matches!(
                cache.invoice_persisted(offer.id(), created, at(t0())),
                Confirmation::Ignored
            ),
            "duplicate"
        );
    }

    #[test]
    fn take_hands_out_each_ready_offer_once_and_refills_with_a_new_slot() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        let first = fill(&mut cache, &fixture, t0());
        let second = fill(&mut cache, &fixture, t0() + Duration::from_secs(1));
        let taken = cache
            .take(Some("shop".into()), t0() + Duration::from_secs(2))
            .unwrap();
        assert_eq!(taken.id(), second.id(), "newest first");
        assert_eq!(taken.state, OfferState::Used);
        assert_eq!(taken.label.as_deref(), Some("shop"));
        assert_eq!(cache.take(None, t0()).unwrap().id(), first.id());
        assert!(cache.take(None, t0()).is_none(), "nothing Ready is left");
        let refill: Vec<u16> = cache
            .plan_requests(at(t0()))
            .iter()
            .map(|p| p.slot)
            .collect();
        assert_eq!(
            refill,
            vec![2, 3],
            "used slots are never reused while their offers live"
        );
    }

    #[test]
    fn each_label_keeps_its_offer_and_no_offer_serves_two_labels() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(4), vec![]);
        for i in 0..4 {
            fill(&mut cache, &fixture, t0() + Duration::from_secs(i));
        }
        let now = t0() + HOUR;
        let (alice, new) = cache.offer_for("alice", now).unwrap();
        assert_eq!(new, Pick::HandedOut);
        assert_eq!(cache.offer_for("alice", now).unwrap().0.id(), alice.id());
        assert_eq!(
            cache.offer_for("alice", now).unwrap().1,
            Pick::Unchanged,
            "nothing new handed out"
        );
        let (bob, _) = cache.offer_for("bob", now).unwrap();
        assert_ne!(bob.id(), alice.id());
        // A later take_offer under the same label does not move the label's offer.
        let taken = cache.take(Some("alice".into()), now + HOUR).unwrap();
        assert!(taken.id() != alice.id() && taken.id() != bob.id());
        assert_eq!(
            cache.offer_for("alice", now + HOUR).unwrap().0.id(),
            alice.id()
        );
        let last = cache.take(None, now).unwrap();
        assert!([alice.id(), bob.id(), taken.id()]
            .iter()
            .all(|&id| id != last.id()));
        assert!(
            cache.offer_for("carol", now).is_none(),
            "nothing Ready left"
        );
        assert_eq!(cache.offer_for("bob", now).unwrap().0.id(), bob.id());
    }

    #[test]
    fn a_label_whose_offer_expired_gets_a_new_one() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        cache.plan_requests(at(t0()));
        let long = fixture.cached(0, t0(), Some(t0() + 365 * DAY));
        // Newer, so handed out first.
        let short = fixture.cached(1, t0() + Duration::from_secs(1), Some(t0() + 30 * DAY));
        for offer in [&long, &short] {
            cache.insert_pending(offer.clone());
            cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(t0()));
        }
        assert_eq!(cache.offer_for("shop", t0()).unwrap().0.id(), short.id());
        assert_eq!(
            cache.offer_for("shop", t0() + 15 * DAY).unwrap().0.id(),
            short.id()
        );
        let (renewed, new) = cache.offer_for("shop", t0() + 30 * DAY).unwrap();
        assert_eq!((renewed.id(), new), (long.id(), Pick::HandedOut));
    }

    #[test]
    fn a_handed_out_offer_is_announced_once_before_it_expires() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        cache.plan_requests(at(t0()));
        let shop = fixture.cached(0, t0() + Duration::from_secs(1), Some(t0() + 100 * DAY));
        let spare = fixture.cached(1, t0(), Some(t0() + 200 * DAY));
        for offer in [&shop, &spare] {
            cache.insert_pending(offer.clone());
            cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(t0()));
        }
        assert_eq!(cache.offer_for("shop", t0()).unwrap().0.id(), shop.id());
        assert!(cache.maintain(at(t0() + 85 * DAY)).expiring.is_empty());
        let announced = cache.maintain(at(t0() + 86 * DAY)).expiring;
        assert_eq!(
            announced.iter().map(|o| o.id()).collect::<Vec<_>>(),
            vec![shop.id()],
            "the handed-out offer only, not the Ready one"
        );
        assert!(
            cache.maintain(at(t0() + 87 * DAY)).expiring.is_empty(),
            "once"
        );
        // Its label moves on to an offer that lasts, which keeps it from then on.
        let (moved, new) = cache.offer_for("shop", t0() + 86 * DAY).unwrap();
        assert_eq!((moved.id(), new), (spare.id(), Pick::HandedOut));
        assert_eq!(
            cache.offer_for("shop", t0() + 87 * DAY).unwrap().0.id(),
            spare.id()
        );
        assert!(cache.offer_for("cafe", t0() + 87 * DAY).is_none());
    }

    /// No Ready offer (offline, the server down): the expiring offer is not announced, as the
    /// app's `offer_for` could only give it back; it is once a fresh one is Ready. If the app
    /// asks and still gets the old one (the fresh one went elsewhere first), the notice is
    /// owed again.
    #[test]
    fn an_expiring_offer_is_announced_once_a_fresh_one_can_take_its_place() {
        let fixture = offer_fixture();
        let mut shop = fixture.cached(0, t0(), Some(t0() + 100 * DAY));
        shop.state = OfferState::Used;
        shop.label = Some("shop".into());
        shop.invoice_confirmed = true;
        let mut cache = connected(policy(1), vec![shop.clone()]);
        let soon = t0() + 87 * DAY;
        assert!(
            cache.maintain(at(soon)).expiring.is_empty(),
            "nothing to move to"
        );
        let (given, pick) = cache.offer_for("shop", soon).unwrap();
        assert_eq!((given.id(), pick), (shop.id(), Pick::Unchanged));
        let ready_now = |cache: &mut OfferCache, slot, now: Duration| {
            let offer = fixture.cached(slot, now, Some(now + 365 * DAY));
            cache.insert_pending(offer.clone());
            cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(now));
            offer
        };
        ready_now(&mut cache, 1, soon);
        let announced = cache.maintain(at(soon)).expiring;
        assert_eq!(
            announced.iter().map(|o| o.id()).collect::<Vec<_>>(),
            vec![shop.id()]
        );
        // The fresh offer goes to another label before the app asks for "shop".
        cache.offer_for("cafe", soon).unwrap();
        let (given, pick) = cache.offer_for("shop", soon).unwrap();
        assert_eq!((given.id(), pick), (shop.id(), Pick::NoticeOwed));
        assert!(
            cache.maintain(at(soon)).expiring.is_empty(),
            "nothing to move to"
        );
        let fresh = ready_now(&mut cache, 2, soon);
        assert_eq!(cache.maintain(at(soon)).expiring.len(), 1, "told again");
        let (given, pick) = cache.offer_for("shop", soon).unwrap();
        assert_eq!((given.id(), pick), (fresh.id(), Pick::HandedOut));
    }

    #[test]
    fn stale_ready_offers_are_replaced_by_fresh_ones() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(1), vec![]);
        let old = fill(&mut cache, &fixture, t0());
        assert!(cache.plan_requests(at(t0() + HOUR)).is_empty());
        let later = t0() + 2 * HOUR;
        let planned = cache.plan_requests(at(later));
        assert_eq!(
            planned,
            vec![PlannedRequest {
                server: server_key(),
                slot: 1,
                attempt: 1
            }]
        );
        assert_eq!(
            cache.take(None, later).map(|o| o.id()),
            Some(old.id()),
            "still usable until replaced"
        );
        cache.untake(old.id());
        let new = fixture.cached(1, later, None);
        cache.insert_pending(new.clone());
        match cache.invoice_persisted(new.id(), new.invoice.invoice.created_at(), at(later)) {
            Confirmation::NowReady { replaced } => assert_eq!(
                replaced.iter().map(|o| o.id()).collect::<Vec<_>>(),
                vec![old.id()]
            ),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(cache.offers().len(), 1);
    }

    #[test]
    fn used_offers_keep_fresh_invoices_and_pending_ones_are_resent_until_confirmed() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(1), vec![]);
        fill(&mut cache, &fixture, t0());
        let used = cache.take(None, t0()).unwrap();
        assert!(cache.maintain(at(t0() + HOUR)).rebuild.is_empty());
        let due = t0() + 2 * HOUR;
        assert_eq!(cache.maintain(at(due)).rebuild, vec![used.id()]);
        let rebuilt = fixture.invoice_for(&used, due);
        cache.replace_invoice(used.id(), rebuilt.clone(), due);
        let soon = due + Duration::from_secs(1);
        assert!(
            cache.plan_resends(at(soon), None).is_empty(),
            "an answer is still expected"
        );
        assert_eq!(
            cache.plan_resends(at(soon), Some(server_key())),
            vec![used.id()],
            "reconnected"
        );
        for tick in 1..=3 {
            let now = due + Duration::from_secs(60 * tick);
            assert!(cache.maintain(at(now)).rebuild.is_empty());
            assert_eq!(cache.plan_resends(at(now), None), vec![used.id()]);
        }
        assert!(matches!(
            cache.invoice_persisted(used.id(), rebuilt.invoice.created_at(), at(due)),
            Confirmation::Refreshed
        ));
        assert!(cache
            .plan_resends(at(due + HOUR), Some(server_key()))
            .is_empty());
        assert_eq!(
            cache.get(used.id()).unwrap().state,
            OfferState::Used,
            "keeps its slot"
        );
    }

    #[test]
    fn invoices_of_an_offer_only_get_newer_and_a_late_older_confirmation_resends_the_newest() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(1), vec![]);
        fill(&mut cache, &fixture, t0());
        let used = cache.take(None, t0()).unwrap();
        let id = used.id();
        let now = t0() + HOUR;
        // Two refreshes begun within one second get distinct, increasing seconds.
        let first = cache.reserve_invoice_time(id, now).unwrap();
        let second = cache.reserve_invoice_time(id, now).unwrap();
        assert_eq!((first, second), (now, now + Duration::from_secs(1)));
        let older = fixture.invoice_for(&used, first);
        let newer = fixture.invoice_for(&used, second);
        // The later one finishes first: the earlier one, slower, never replaces it.
        assert!(cache.replace_invoice(id, newer.clone(), now));
        assert!(!cache.replace_invoice(id, older.clone(), now));
        assert_eq!(cache.get(id).unwrap().invoice.invoice.created_at(), second);
        // After the current invoice was sent, a confirmation of an older one means the server
        // may hold that one last: the current one is unconfirmed again and sent again.
        assert!(matches!(
            cache.invoice_persisted(id, newer.invoice.created_at(), at(now)),
            Confirmation::Refreshed
        ));
        assert!(matches!(
            cache.invoice_persisted(id, older.invoice.created_at(), at(now)),
            Confirmation::Superseded
        ));
        assert!(!cache.get(id).unwrap().invoice_confirmed);
        assert!(
            cache.plan_resends(at(now), None).is_empty(),
            "the caller sends it now: not twice"
        );
        assert!(matches!(
            cache.invoice_persisted(id, newer.invoice.created_at(), at(now)),
            Confirmation::Refreshed
        ));
        // Confirmed, the reservation stays ahead: the next refresh is later still.
        assert_eq!(
            cache.reserve_invoice_time(id, now),
            Some(now + Duration::from_secs(2))
        );
    }

    /// The wall clock a day behind, or a day ahead and then put right: refreshes, resends and
    /// the failure notice come when the monotonic clock says, as with the clock right.
    #[test]
    fn refreshes_resends_and_the_failure_notice_keep_their_schedule_when_the_wall_clock_jumps() {
        let fixture = offer_fixture();
        for skew in ["a day behind", "a day ahead, then put right"] {
            let mut cache = connected(policy(1), vec![]);
            fill(&mut cache, &fixture, t0());
            let used = cache.take(None, t0()).unwrap();
            let id = used.id();
            let wrong = |monotonic: Duration| Time {
                wall: match skew {
                    "a day behind" => monotonic - DAY,
                    _ => monotonic + DAY,
                },
                monotonic,
            };
            assert!(cache.maintain(wrong(t0() + HOUR)).rebuild.is_empty());
            let due = t0() + 2 * HOUR;
            assert_eq!(cache.maintain(wrong(due)).rebuild, vec![id], "{skew}");
            // Stamped as the engine does: the wall clock's time, after the current invoice.
            let created = cache.reserve_invoice_time(id, wrong(due).wall).unwrap();
            assert!(cache.replace_invoice(id, fixture.invoice_for(&used, created), due));
            // From here on, the clock is put right in the second case; the first stays behind.
            let clock = |monotonic: Duration| match skew {
                "a day behind" => wrong(monotonic),
                _ => at(monotonic),
            };
            let mut sends = Vec::new();
            for second in 1..=40 {
                let now = due + Duration::from_secs(second);
                if cache.plan_resends(clock(now), None) == vec![id] {
                    sends.push(second);
                }
            }
            assert_eq!(
                sends,
                vec![5, 15, 35],
                "{skew}: resends back off by the monotonic clock"
            );
            // Never confirmed: the app hears of it once the last confirmation (at t0) is the
            // refresh interval and the margin old by the monotonic clock.
            let heard = |cache: &mut OfferCache, now| cache.maintain(clock(now)).refresh_failed;
            assert!(heard(&mut cache, t0() + 3 * HOUR - Duration::from_secs(1)).is_empty());
            assert_eq!(
                heard(&mut cache, t0() + 3 * HOUR).len(),
                1,
                "{skew}: the failure notice on time"
            );
            // Confirmed now: the next refresh is due two hours after this invoice was made,
            // by the monotonic clock, whatever creation time it carries.
            cache.invoice_persisted(id, created, clock(t0() + 3 * HOUR));
            let next = due + 2 * HOUR;
            assert!(cache
                .maintain(clock(next - Duration::from_secs(1)))
                .rebuild
                .is_empty());
            assert_eq!(cache.maintain(clock(next)).rebuild, vec![id], "{skew}");
        }
    }

    /// After a restart the deadlines are worked out from the records' wall-clock times once:
    /// an invoice made in the future by this clock is due at once.
    #[test]
    fn a_loaded_invoice_made_in_the_future_is_due_at_once() {
        let fixture = offer_fixture();
        let mut offer = fixture.cached(1, t0() + DAY, None);
        offer.state = OfferState::Used;
        offer.invoice_confirmed = true;
        offer.invoice_confirmed_at = Some(t0() + DAY);
        offer.refresh_due_at = None;
        let id = offer.id();
        let mut cache = connected(policy(1), vec![offer]);
        assert_eq!(cache.maintain(at(t0())).rebuild, vec![id]);
    }

    #[test]
    fn what_a_sync_waits_for_and_a_confirmation_taken_back() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        fill(&mut cache, &fixture, t0());
        let used = cache.take(None, t0()).unwrap();
        fill(&mut cache, &fixture, t0());
        assert!(cache.unrefreshed(at(t0() + HOUR)).is_empty(), "fresh");
        let due = t0() + 2 * HOUR;
        assert_eq!(cache.unrefreshed(at(due))[0].1, Unrefreshed::Due);
        let rebuilt = fixture.invoice_for(&used, due);
        cache.replace_invoice(used.id(), rebuilt.clone(), due);
        assert_eq!(
            cache.unrefreshed(at(due))[0].1,
            Unrefreshed::Unconfirmed { sends: 1 }
        );
        cache.invoice_persisted(used.id(), rebuilt.invoice.created_at(), at(due));
        assert!(cache.unrefreshed(at(due)).is_empty(), "confirmed");

        // Taken back: only for the invoice it confirmed, and a handed-out offer stays so.
        cache.confirmation_unwritten(used.id(), used.invoice.invoice.created_at(), "old".into());
        assert!(cache.unrefreshed(at(due)).is_empty(), "another invoice's");
        cache.confirmation_unwritten(used.id(), rebuilt.invoice.created_at(), "full".into());
        assert_eq!(
            cache.unrefreshed(at(due))[0].1,
            Unrefreshed::Failed("full".into())
        );
        // What it says of its last confirmation is the one before, as on disk: the failure
        // notice is not put off by a confirmation the disk never got.
        let taken_back = cache.get(used.id()).unwrap();
        assert_eq!(taken_back.invoice_confirmed_at, used.invoice_confirmed_at);
        assert_eq!(taken_back.stale_at, Some(t0() + 3 * HOUR));
        assert_eq!(cache.get(used.id()).unwrap().state, OfferState::Used);
        let resent = due + Duration::from_secs(5);
        assert_eq!(cache.plan_resends(at(resent), None), vec![used.id()]);

        // A Ready offer is Pending again: the disk knows nothing of it.
        let ready = cache
            .offers()
            .iter()
            .find(|o| o.state == OfferState::Ready)
            .unwrap()
            .clone();
        cache.confirmation_unwritten(
            ready.id(),
            ready.invoice.invoice.created_at(),
            "full".into(),
        );
        assert_eq!(cache.get(ready.id()).unwrap().state, OfferState::Pending);
        assert!(
            cache.take(None, resent).is_none(),
            "nothing Ready to hand out"
        );
    }

    #[test]
    fn an_expired_handed_out_offer_keeps_its_slot_for_the_retention_and_revives_if_the_clock_was_wrong(
    ) {
        let fixture = offer_fixture();
        let mut cache = connected(policy(1), vec![]);
        cache.plan_requests(at(t0()));
        let offer = fixture.cached(0, t0(), Some(t0() + 100 * DAY));
        cache.insert_pending(offer.clone());
        cache.invoice_persisted(offer.id(), offer.invoice.invoice.created_at(), at(t0()));
        cache.take(Some("bio".into()), t0()).unwrap();
        cache.plan_requests(at(t0()));
        let refill = fixture.cached(1, t0(), Some(t0() + 400 * DAY));
        cache.insert_pending(refill.clone());
        cache.invoice_persisted(refill.id(), refill.invoice.invoice.created_at(), at(t0()));

        // The wall clock jumps 110 days ahead; the monotonic clock moves a minute.
        let wrong = Time {
            wall: t0() + 110 * DAY,
            monotonic: t0() + Duration::from_secs(60),
        };
        let m = cache.maintain(wrong);
        assert_eq!(
            m.expired.iter().map(|o| o.id()).collect::<Vec<_>>(),
            vec![offer.id()],
            "announced as expired"
        );
        assert!(m.removed.is_empty(), "but not removed");
        assert!(m.rebuild.is_empty(), "nor refreshed");
        assert!(cache.maintain(wrong).expired.is_empty(), "announced once");
        assert_eq!(cache.get(offer.id()).unwrap().state, OfferState::Used);
        assert!(
            cache.offer_for("bio", wrong.wall).unwrap().0.id() != offer.id(),
            "not given out while expired"
        );
        assert!(
            cache
                .plan_requests(at(wrong.wall))
                .iter()
                .all(|p| p.slot != offer.slot),
            "its slot stays its own"
        );

        // The clock is put right: the offer is live again, refreshed and given to its label.
        let right = t0() + 3 * HOUR;
        let m = cache.maintain(at(right));
        assert!(m.removed.is_empty() && m.expired.is_empty());
        assert!(m.rebuild.contains(&offer.id()), "refreshed again");
        assert_eq!(cache.offer_for("bio", right).unwrap().0.id(), offer.id());

        // Expired for good: kept for the 90 days of the retention, then removed, slot free.
        let m = cache.maintain(at(t0() + 189 * DAY));
        assert!(m.removed.is_empty());
        let m = cache.maintain(at(t0() + 190 * DAY));
        assert!(m.removed.iter().any(|o| o.id() == offer.id()));
        assert!(cache.get(offer.id()).is_none());
    }

    #[test]
    fn a_wall_clock_going_back_stalls_neither_retries_nor_resends() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(2), vec![]);
        let start = at(t0());
        assert_eq!(cache.plan_requests(start).len(), 2);
        let pending = fixture.cached(0, t0(), None);
        cache.insert_pending(pending.clone());
        assert_eq!(cache.plan_resends(start, None), vec![pending.id()]);
        // A day back by the wall clock, 20 seconds on by the monotonic one.
        let later = Time {
            wall: t0() - 24 * HOUR,
            monotonic: t0() + Duration::from_secs(20),
        };
        assert_eq!(
            cache.plan_requests(later).len(),
            1,
            "the unanswered request is retried"
        );
        assert_eq!(
            cache.plan_resends(later, None),
            vec![pending.id()],
            "the unconfirmed invoice is resent"
        );
        // Two hours on by the monotonic clock, whatever the wall says: abandoned.
        let much_later = Time {
            wall: t0() - 24 * HOUR,
            monotonic: t0() + 2 * HOUR,
        };
        assert_eq!(cache.maintain(much_later).abandoned.len(), 1);
    }

    #[test]
    fn pending_offers_never_confirmed_are_abandoned_and_re_requested() {
        let fixture = offer_fixture();
        let mut cache = connected(policy(1), vec![]);
        cache.plan_requests(at(t0()));
        let offer = fixture.cached(0, t0(), None);
        cache.insert_pending(offer.clone());
        assert_eq!(cache.plan_resends(at(t0() + HOUR), None), vec![offer.id()]);
        let m = cache.maintain(at(t0() + 2 * HOUR));
        assert_eq!(m.abandoned.len(), 1);
        assert_eq!(cache.plan_requests(at(t0() + 2 * HOUR)).len(), 1);
    }

    #[test]
    fn an_invoice_left_old_by_a_night_off_is_no_failure_until_this_process_has_tried() {
        let fixture = offer_fixture();
        let mut offer = fixture.cached(3, t0(), None);
        offer.state = OfferState::Used;
        offer.handed_out_at = Some(t0());
        offer.invoice_confirmed = true;
        offer.invoice_confirmed_at = Some(t0());
        let id = offer.id();
        let mut cache = connected(policy(1), vec![offer]);
        // The app was not running for a day: the refresh is due, not failed.
        let morning = t0() + DAY;
        let first = cache.maintain(at(morning));
        assert_eq!(first.rebuild, vec![id]);
        assert!(first.refresh_failed.is_empty());
        // Rebuilt and sent; the server does not answer its sends.
        cache.replace_invoice(
            id,
            fixture.invoice_for(cache.get(id).unwrap(), morning),
            morning,
        );
        let mut now = morning;
        for _ in 0..2 {
            now += 10 * 60 * Duration::from_secs(1);
            assert_eq!(cache.plan_resends(at(now), None), vec![id]);
        }
        assert!(
            cache.maintain(at(now)).refresh_failed.is_empty(),
            "3 sends, 20 minutes"
        );
        now += 10 * 60 * Duration::from_secs(1);
        assert_eq!(cache.plan_resends(at(now), None), vec![id]);
        let failed = cache.maintain(at(now)).refresh_failed;
        assert_eq!(failed.len(), 1);
        assert!(failed[0].1.contains("sent 4 times"), "{}", failed[0].1);
        assert!(
            cache.maintain(at(now + HOUR)).refresh_failed.is_empty(),
            "once"
        );
        // Confirmed: fresh, and a later failure would be told again.
        let created = cache.get(id).unwrap().invoice.invoice.created_at();
        assert!(matches!(
            cache.invoice_persisted(id, created, at(now)),
            Confirmation::Refreshed
        ));
        let offer = cache.get(id).unwrap();
        assert_eq!(offer.invoice_confirmed_at, Some(now));
        assert!(!offer.refresh_failure_announced);
    }

    #[test]
    fn offer_for_stays_on_one_offer_when_every_ready_one_is_about_to_expire_too() {
        let fixture = offer_fixture();
        // Every offer, handed out or Ready, expires in 10 days: within the 14-day notice.
        let expiry = t0() + 10 * DAY;
        let mut shop = fixture.cached(1, t0(), Some(expiry));
        shop.state = OfferState::Used;
        shop.label = Some("shop".into());
        shop.handed_out_at = Some(t0());
        let mut ready: Vec<CachedOffer> = (2..5)
            .map(|slot| fixture.cached(slot, t0(), Some(expiry + Duration::from_secs(60))))
            .collect();
        for offer in &mut ready {
            offer.state = OfferState::Ready;
        }
        let mut offers = vec![shop.clone()];
        offers.extend(ready);
        let mut cache = connected(policy(3), offers);
        for _ in 0..3 {
            let (given, new) = cache.offer_for("shop", t0()).unwrap();
            assert_eq!(
                (given.id(), new),
                (shop.id(), Pick::Unchanged),
                "no new hand-out per call"
            );
        }
        assert_eq!(cache.handed_out().count(), 1);
        // A label of its own still gets one of them: better than none.
        let (first, new) = cache.offer_for("cafe", t0()).unwrap();
        assert_eq!(new, Pick::HandedOut);
        assert_eq!(cache.offer_for("cafe", t0()).unwrap().0.id(), first.id());
    }
}
