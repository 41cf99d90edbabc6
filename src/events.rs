//! Events the client reports, the listener trait, and the plumbing that delivers them.
//!
//! Every event goes two ways: live to the listeners, on a dedicated thread so a slow or
//! panicking listener never stalls or kills the network task; and into a queue the app reads
//! at its pace (`next_event`, `event_handled`), where those that ask it to act are written to
//! the data dir first and wait across restarts until handled.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lightning::bitcoin::hex::DisplayHex;
use lightning::bitcoin::secp256k1::PublicKey;

use crate::offers::cache::{CachedOffer, OfferState};
use crate::Error;

/// An offer as the app sees it (`Offer` in the Kotlin and Swift SDKs). Times are durations
/// since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record), uniffi(name = "Offer"))]
pub struct OfferInfo {
    /// The node id (hex) of the server holding the offer's invoice.
    pub server_node_id: String,
    /// The server slot the offer's invoice lives in.
    pub slot: u16,
    /// Where the offer is in its life.
    pub state: OfferState,
    /// The offer as a bech32 `lno1…` string, ready for a QR code.
    pub offer: String,
    /// The offer id, hex.
    pub offer_id: String,
    /// The label given when the offer was handed out.
    pub label: Option<String>,
    /// When the offer was built.
    pub created_at: Duration,
    /// When the offer stops being payable (`None`: never).
    pub expires_at: Option<Duration>,
    /// When the server last confirmed it stores an invoice of this offer, by this device's
    /// clock (`None`: never, or not known to releases before 0.2): what payers get is that
    /// invoice.
    pub invoice_confirmed_at: Option<Duration>,
    /// When a check last got this offer's invoice from its server as a payer does, and it was
    /// the one the server confirmed last, by this device's clock (`None`: never yet; see
    /// [`AsyncOffersClient::check_offers`](crate::AsyncOffersClient::check_offers)).
    pub verified_at: Option<Duration>,
    /// Why this offer can no longer be paid, if a check found so ([`Event::OfferBroken`]).
    pub broken: Option<String>,
}

impl OfferInfo {
    pub(crate) fn offer_id_hex(id: lightning::offers::offer::OfferId) -> String {
        id.0.as_hex().to_string()
    }

    pub(crate) fn node_id_hex(node_id: &PublicKey) -> String {
        node_id.serialize().as_hex().to_string()
    }
}

impl From<&CachedOffer> for OfferInfo {
    fn from(offer: &CachedOffer) -> Self {
        Self {
            server_node_id: Self::node_id_hex(&offer.server),
            slot: offer.slot,
            state: offer.state,
            offer: offer.offer.to_string(),
            offer_id: Self::offer_id_hex(offer.id()),
            label: offer.label.clone(),
            created_at: offer.created_at,
            expires_at: offer.expires_at(),
            invoice_confirmed_at: offer.invoice_confirmed_at,
            verified_at: offer.verified_at,
            broken: offer.broken.clone(),
        }
    }
}

/// What the client is doing, for an app's diagnostics (see
/// [`AsyncOffersClient::status`](crate::AsyncOffersClient::status)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct ClientStatus {
    /// Whether [`start`](crate::AsyncOffersClient::start) was called and not stopped since.
    pub running: bool,
    /// How many offers are Ready.
    pub ready_offers: u32,
    /// The configured number of Ready offers.
    pub wanted_offers: u32,
    /// Each configured server, in the config's order.
    pub servers: Vec<ServerStatus>,
    /// What the checks found of each handed-out live offer of a configured server (see
    /// [`AsyncOffersClient::check_offers`](crate::AsyncOffersClient::check_offers)).
    pub offer_checks: Vec<OfferCheckStatus>,
}

/// What the checks found of one handed-out offer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct OfferCheckStatus {
    /// The server holding its invoice, hex.
    pub server_node_id: String,
    /// The offer id, hex.
    pub offer_id: String,
    /// When a check last found payers get the invoice the server confirmed last.
    pub verified_at: Option<Duration>,
    /// What the last check found (or that none ran yet, or one is under way), in words a
    /// support person can act on.
    pub finding: String,
}

/// One server as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct ServerStatus {
    /// Its node id, hex.
    pub server_node_id: String,
    /// Whether the connection to it is up.
    pub connected: bool,
    /// What last went wrong with it (its offer paths refused and why, a connection that
    /// failed, a refresh it did not confirm), until an invoice of it is confirmed again.
    pub last_problem: Option<String>,
    /// What the checks found of its handed-out offers, in one sentence (`None`: it holds
    /// none); each offer's is in [`ClientStatus::offer_checks`].
    pub checks: Option<String>,
}

/// What [`AsyncOffersClient::sync`](crate::AsyncOffersClient::sync) got done before it
/// returned: all of it, or what is left and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct SyncReport {
    /// Whether everything was done: as many offers Ready as the config wants, and every
    /// handed-out offer with a fresh invoice its server confirmed, all of it written.
    pub complete: bool,
    /// How many offers are Ready, and written so.
    pub ready_offers: u32,
    /// The configured number of Ready offers.
    pub wanted_offers: u32,
    /// Handed-out offers whose new invoice their server confirmed, written, during the sync.
    pub refreshed: u32,
    /// Handed-out offers due a check that a check found served to payers as confirmed
    /// during the sync (see [`Config::offer_check_interval`](crate::Config::offer_check_interval)).
    pub verified: u32,
    /// What is left: each handed-out offer still without a fresh confirmed invoice or with a
    /// check due and not ended, and each server while Ready offers are missing, with why.
    pub unfinished: Vec<Unfinished>,
    /// How long the sync took.
    pub elapsed: Duration,
}

/// What [`AsyncOffersClient::check_offers`](crate::AsyncOffersClient::check_offers) found
/// before it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct CheckReport {
    /// Whether every check ended: each handed-out offer found served to payers as its server
    /// confirmed (at once, or once served again), or found broken.
    pub complete: bool,
    /// The handed-out live offers of configured servers asked to be checked.
    pub checked: u32,
    /// Of those, found served to payers as confirmed.
    pub verified: u32,
    /// Of the verified ones, those whose invoice had to be served again first (the server
    /// gave payers none, or an older one).
    pub served_again: u32,
    /// Of those checked, found broken ([`Event::OfferBroken`]).
    pub broken: u32,
    /// What did not end, and why: a server not connected, an answer not come yet, an invoice
    /// the server still does not serve after it was served again.
    pub unfinished: Vec<Unfinished>,
    /// How long the checks took.
    pub elapsed: Duration,
}

/// Something a [`SyncReport`] or a [`CheckReport`] did not get done, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct Unfinished {
    /// The server it waits for, hex.
    pub server_node_id: String,
    /// The handed-out offer whose invoice is not fresh and confirmed, or whose check did not
    /// end; `None` for a server whose share of the Ready offers is missing.
    pub offer_id: Option<String>,
    /// Why, in words for a log or a diagnostics screen.
    pub reason: String,
}

/// What [`AsyncOffersClient::import_offers`](crate::AsyncOffersClient::import_offers) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "ffi", derive(uniffi::Record))]
pub struct ImportedOffers {
    /// Offers of the book that are now handed out here: new ones, and Ready ones here that the
    /// book says were handed out (no longer offered by `take_offer`).
    pub imported: u32,
    /// Offers of the book already handed out here.
    pub already_here: u32,
    /// Offers of the book not imported: an offer handed out here holds their slot.
    pub conflicting: u32,
}

/// Something that happened (`OfferEvent` in the Kotlin and Swift SDKs).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "ffi", derive(uniffi::Enum), uniffi(name = "OfferEvent"))]
#[non_exhaustive]
pub enum Event {
    /// The server confirmed an offer's invoice: the offer can be handed out.
    OfferReady {
        /// The new offer.
        offer: OfferInfo,
    },
    /// A Ready offer that was never handed out was dropped for a fresher one.
    OfferReplaced {
        /// The dropped offer's id.
        old_offer_id: String,
        /// The offer that took its place.
        new_offer: OfferInfo,
    },
    /// A handed-out offer expires within
    /// [`Config::offer_expiring_notice`](crate::Config::offer_expiring_notice), and a fresh
    /// offer is Ready to take its place: publish another (for its label,
    /// [`offer_for`](crate::AsyncOffersClient::offer_for) now gives the fresh one). Not sent
    /// while no fresh offer is Ready; sent again if `offer_for` gave the label this offer back
    /// (the fresh one went elsewhere first), once another is.
    OfferExpiring {
        /// The offer, with its label and expiry.
        offer: OfferInfo,
    },
    /// An offer expired by the device's clock. A Ready one is removed; a handed-out one is no
    /// longer refreshed or given out, but is kept with its slot for
    /// [`Config::expired_offer_retention`](crate::Config::expired_offer_retention), and is live
    /// again if the clock is put right meanwhile.
    OfferExpired {
        /// The expired offer's id.
        offer_id: String,
    },
    /// The server confirmed a refreshed invoice for an offer.
    InvoiceRefreshed {
        /// The offer whose invoice was refreshed.
        offer_id: String,
    },
    /// A handed-out offer has gone without a confirmed fresh invoice for an hour past its
    /// [`Config::invoice_refresh_interval`](crate::Config::invoice_refresh_interval): payers
    /// get an invoice that old, whose channels may be gone. Sent once until a fresh invoice is
    /// confirmed ([`Event::InvoiceRefreshed`]); the client keeps trying meanwhile, with
    /// backoff.
    InvoiceRefreshFailed {
        /// The offer, with when its invoice was last confirmed.
        offer: OfferInfo,
        /// Why no fresh invoice was confirmed: the server does not answer, cannot be reached,
        /// the invoice could not be built or written.
        reason: String,
    },
    /// The connection to a server is up.
    ServerConnected {
        /// The server's node id, hex.
        server_node_id: String,
    },
    /// The connection to a server went down; it is retried with backoff, and other servers
    /// take over its share of the offers meanwhile.
    ServerDisconnected {
        /// The server's node id, hex.
        server_node_id: String,
    },
    /// A check found a handed-out offer that this client can no longer keep payable: its slot
    /// on the server holds another offer's invoice (another install of this wallet, or the
    /// server, overwrote it), so payers of this offer get an invoice they refuse. Publish
    /// another: for its label, [`offer_for`](crate::AsyncOffersClient::offer_for) gives a
    /// fresh offer from now on. Its invoice is never sent again (that would break the other
    /// offer). Kept, across restarts, until handled.
    OfferBroken {
        /// The offer, with its label.
        offer: OfferInfo,
        /// What the check found, in words for a log or a support person.
        reason: String,
    },
    /// The server forwarded a payer's invoice request, verified as one for our offer.
    InvoiceRequestForwarded {
        /// The offer the payer wants to pay.
        offer_id: String,
        /// The amount the payer asked for, if any.
        amount_msats: Option<u64>,
        /// The payer's note, if any.
        payer_note: Option<String>,
    },
}

impl Event {
    /// The event for the log: its kind and ids, never a label, a payer's note or an amount,
    /// which stay with the app.
    fn summary(&self) -> String {
        match self {
            Event::OfferReady { offer } => {
                format!("OfferReady {} (slot {})", offer.offer_id, offer.slot)
            }
            Event::OfferReplaced {
                old_offer_id,
                new_offer,
            } => format!("OfferReplaced {old_offer_id} by {}", new_offer.offer_id),
            Event::OfferExpiring { offer } => format!("OfferExpiring {}", offer.offer_id),
            Event::OfferExpired { offer_id } => format!("OfferExpired {offer_id}"),
            Event::InvoiceRefreshed { offer_id } => format!("InvoiceRefreshed {offer_id}"),
            Event::InvoiceRefreshFailed { offer, .. } => {
                format!("InvoiceRefreshFailed {}", offer.offer_id)
            }
            Event::ServerConnected { server_node_id } => {
                format!("ServerConnected {server_node_id}")
            }
            Event::ServerDisconnected { server_node_id } => {
                format!("ServerDisconnected {server_node_id}")
            }
            Event::InvoiceRequestForwarded { offer_id, .. } => {
                format!("InvoiceRequestForwarded {offer_id}")
            }
            Event::OfferBroken { offer, .. } => format!("OfferBroken {}", offer.offer_id),
        }
    }

    /// Whether the event asks the app to act (republish an offer, drop one from its screens,
    /// warn that payments may fail, answer a payer): such events are written to the data dir
    /// and stay in the queue across restarts until the app says it handled them (a forwarded
    /// invoice request only while at most 256 wait, and written only by a client holding the
    /// data dir).
    pub fn asks_the_app_to_act(&self) -> bool {
        matches!(
            self,
            Event::OfferExpiring { .. }
                | Event::OfferExpired { .. }
                | Event::InvoiceRefreshFailed { .. }
                | Event::InvoiceRequestForwarded { .. }
                | Event::OfferBroken { .. }
        )
    }

    /// For events that say the same about one offer: its kind and the offer. A second one is
    /// not queued while the first waits.
    fn about_offer(&self) -> Option<(&'static str, &str)> {
        match self {
            Event::OfferExpiring { offer } => Some(("expiring", &offer.offer_id)),
            Event::OfferExpired { offer_id } => Some(("expired", offer_id)),
            Event::InvoiceRefreshFailed { offer, .. } => Some(("refresh failed", &offer.offer_id)),
            Event::OfferBroken { offer, .. } => Some(("broken", &offer.offer_id)),
            _ => None,
        }
    }
}

/// An event waiting in the queue for the app, with the id that
/// [`AsyncOffersClient::event_handled`](crate::AsyncOffersClient::event_handled) takes once the
/// app has acted on it (`QueuedOfferEvent` in the Kotlin and Swift SDKs).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "ffi",
    derive(uniffi::Record),
    uniffi(name = "QueuedOfferEvent")
)]
pub struct QueuedEvent {
    /// Names this event in this client, for as long as it waits: never given to another.
    pub id: u64,
    /// What happened.
    pub event: Event,
}

/// Receives the client's events as they happen. Called from the SDK's event thread, never
/// from the app's. A live feed: a listener added later, or an app not running, misses what
/// happened before; [`AsyncOffersClient::next_event`](crate::AsyncOffersClient::next_event)
/// keeps what must not be missed.
pub trait EventListener: Send + Sync {
    /// Called once per event, in order.
    fn on_event(&self, event: Event);
}

/// Where the events that ask the app to act are kept: one record each, by sequence number
/// (the offer store's, in the data dir). A trait so that the events need not know the store.
pub(crate) trait EventRecords: Send + Sync {
    /// The stored events, oldest first, with their sequence numbers (`None`: they could not
    /// be listed).
    fn events(&self) -> Option<Vec<(u64, Event)>>;
    /// Writes `event` as the one numbered `sequence`.
    fn save_event(&self, sequence: u64, event: &Event) -> Result<(), Error>;
    /// Deletes the event numbered `sequence`.
    fn remove_event(&self, sequence: u64) -> Result<(), Error>;
}

/// The most events that ask nothing of the app the queue holds (the state they told of can
/// be read at any time); past it, the oldest not yet returned to the app goes.
const MAX_INFORMATIONAL_EVENTS: usize = 1024;
/// The most forwarded invoice requests the queue holds; past it, the oldest not yet returned
/// to the app goes, so that a payer flooding requests crowds out nothing else. Notices about
/// an offer (expiring, expired, its refresh failed) are one per offer and kind, and never
/// dropped.
const MAX_FORWARDED_REQUESTS: usize = 256;

/// A listener's handle, from [`AsyncOffersClient::add_listener`](crate::AsyncOffersClient::add_listener),
/// to remove it with [`AsyncOffersClient::remove_listener`](crate::AsyncOffersClient::remove_listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(pub u64);

/// The listeners, in the order they were added.
#[derive(Default)]
struct Listeners {
    added: Vec<(ListenerId, Arc<dyn EventListener>)>,
    next_id: u64,
}

/// Fans events out to listeners (on a thread of its own) and async waiters, and keeps them in
/// a queue until the app handles them, those that ask it to act written to the data dir.
pub(crate) struct EventBus {
    listeners: Arc<Mutex<Listeners>>,
    sender: Mutex<mpsc::Sender<Event>>,
    changes: tokio::sync::watch::Sender<u64>,
    queue: Mutex<Queue>,
    /// Held for each event record written or removed, and while the stored ones are read in:
    /// the queue's own lock is never held across that I/O, so `next_event` never waits on the
    /// disk.
    record_io: Mutex<()>,
    /// Where the events that ask the app to act are kept (`None`: nowhere, in fuzzing).
    store: Option<Arc<dyn EventRecords>>,
}

/// The events not handled yet, in the order they came.
#[derive(Default)]
struct Queue {
    events: VecDeque<Queued>,
    /// The number the next stored event gets.
    next_sequence: u64,
    /// The id the next queued event gets.
    next_id: u64,
}

/// One event of the queue.
struct Queued {
    id: u64,
    /// The number of its stored record, if it has one.
    sequence: Option<u64>,
    event: Event,
    /// Whether the app was given it (by `next_event` or `wait_next_event`): then only the app
    /// removes it, by its id.
    shown: bool,
}

impl Queue {
    fn push(&mut self, sequence: Option<u64>, event: Event) {
        let id = self.next_id;
        self.next_id += 1;
        self.events.push_back(Queued {
            id,
            sequence,
            event,
            shown: false,
        });
    }

    /// The oldest event `kind` accepts that the app was not given, taken out of the queue.
    fn remove_oldest_unshown(&mut self, kind: impl Fn(&Event) -> bool) -> Option<Queued> {
        let index = self
            .events
            .iter()
            .position(|queued| !queued.shown && kind(&queued.event))?;
        self.events.remove(index)
    }

    /// Drops what is over the limits of each kind, oldest first, never an event the app was
    /// given; returns what it dropped.
    fn over_limits(&mut self) -> Vec<Queued> {
        let mut dropped = Vec::new();
        let forwarded = |event: &Event| matches!(event, Event::InvoiceRequestForwarded { .. });
        let informational = |event: &Event| !event.asks_the_app_to_act();
        for (kind, limit) in [
            (
                &forwarded as &dyn Fn(&Event) -> bool,
                MAX_FORWARDED_REQUESTS,
            ),
            (&informational, MAX_INFORMATIONAL_EVENTS),
        ] {
            while self
                .events
                .iter()
                .filter(|queued| kind(&queued.event))
                .count()
                > limit
            {
                match self.remove_oldest_unshown(kind) {
                    Some(queued) => dropped.push(queued),
                    None => break,
                }
            }
        }
        dropped
    }
}

impl EventBus {
    pub fn new(store: Option<Arc<dyn EventRecords>>) -> Self {
        let (sender, receiver) = mpsc::channel::<Event>();
        let listeners: Arc<Mutex<Listeners>> = Arc::default();
        let for_thread = listeners.clone();
        let spawned = std::thread::Builder::new()
            .name("async-offers-events".into())
            .spawn(move || {
                for event in receiver {
                    let listed = || for_thread.lock().unwrap_or_else(|e| e.into_inner());
                    // A snapshot: a listener may add or remove listeners from its call.
                    let listeners = listed().added.clone();
                    for (id, listener) in listeners {
                        // Removed meanwhile (by an earlier listener, or the app): not called.
                        if !listed().added.iter().any(|(listed, _)| *listed == id) {
                            continue;
                        }
                        let event = event.clone();
                        if catch_unwind(AssertUnwindSafe(|| listener.on_event(event))).is_err() {
                            log::error!("an event listener panicked; the SDK carries on");
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            log::error!("could not start the event thread, listeners will not be called: {e}");
        }
        Self {
            listeners,
            sender: Mutex::new(sender),
            changes: tokio::sync::watch::channel(0).0,
            queue: Mutex::new(Queue::default()),
            record_io: Mutex::new(()),
            store,
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in the stored events: at build, and when another client used the data dir
    /// (which may have handled some and added others). The queue keeps its order and its ids:
    /// a stored event whose record is gone (handled there) leaves it unless the app was given
    /// it (then only the app removes it), one new to it comes after those it has. A record is
    /// a queued event's only if it holds that same event: another client, numbering from what
    /// it found, may have written another event under a number this queue knew. Stored events
    /// that cannot be listed leave the queue as it is. Call it holding the data dir's lock.
    pub fn load_stored(&self) {
        let _io = self.record_io();
        let Some(stored) = self.store.as_ref().and_then(|store| store.events()) else {
            return;
        };
        let mut queue = self.queue();
        let on_disk = |queued: &Queued| {
            stored.iter().any(|(sequence, event)| {
                queued.sequence == Some(*sequence) && *event == queued.event
            })
        };
        queue.events.retain_mut(|queued| {
            if queued.sequence.is_none() || on_disk(queued) {
                return true;
            }
            // Its record is gone: the app, given it, still removes it by its id, but nothing
            // on disk is its any more.
            queued.sequence = None;
            queued.shown
        });
        let next_after_stored = stored.last().map_or(0, |(sequence, _)| sequence + 1);
        queue.next_sequence = queue.next_sequence.max(next_after_stored);
        for (sequence, event) in stored {
            if !queue
                .events
                .iter()
                .any(|queued| queued.sequence == Some(sequence))
            {
                queue.push(Some(sequence), event);
            }
        }
        drop(queue);
        self.changes.send_modify(|version| *version += 1);
    }

    pub fn add_listener(&self, listener: Arc<dyn EventListener>) -> ListenerId {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        let id = ListenerId(listeners.next_id);
        listeners.next_id += 1;
        listeners.added.push((id, listener));
        id
    }

    /// Removes the listener `id`; whether it was there.
    pub fn remove_listener(&self, id: ListenerId) -> bool {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        let before = listeners.added.len();
        listeners.added.retain(|(added, _)| *added != id);
        listeners.added.len() != before
    }

    /// Reports `event`: to the listeners, and into the queue, written first if it asks the
    /// app to act. Call it holding the data dir's lock.
    pub fn emit(&self, event: Event) {
        self.report(event, true)
    }

    /// As [`Self::emit`], for a caller that could not take the data dir's lock: the event is
    /// queued in this process only, never written (its sequence could be another client's).
    pub fn emit_unwritten(&self, event: Event) {
        self.report(event, false)
    }

    fn report(&self, event: Event, may_write: bool) {
        log::debug!("event: {}", event.summary());
        let store = self
            .store
            .as_ref()
            .filter(|_| may_write && event.asks_the_app_to_act());
        // Held from the check for a repeat to the push, so that two of one notice made at once
        // are not both written; the queue's lock is let go during the write.
        let mut io = store.map(|_| self.record_io());
        let mut queue = self.queue();
        // Repeats only one still waiting to be given to the app: one given may be being
        // handled this moment, and handling it must not swallow this one.
        let repeated = event.about_offer().is_some_and(|about| {
            queue
                .events
                .iter()
                .any(|queued| !queued.shown && queued.event.about_offer() == Some(about))
        });
        if !repeated {
            let mut sequence = None;
            if let Some(store) = store {
                let next = queue.next_sequence;
                queue.next_sequence += 1;
                drop(queue);
                match store.save_event(next, &event) {
                    Ok(()) => sequence = Some(next),
                    Err(e) => log::error!("{e}; the event waits in memory only"),
                }
                queue = self.queue();
            }
            queue.push(sequence, event.clone());
            let dropped = queue.over_limits();
            drop(queue);
            for dropped in dropped {
                log::warn!(
                    "too many events of its kind wait for the app; dropping the oldest: {}",
                    dropped.event.summary()
                );
                if let (Some(sequence), Some(store)) = (dropped.sequence, &self.store) {
                    let _io = io.get_or_insert_with(|| self.record_io());
                    if let Err(e) = store.remove_event(sequence) {
                        log::error!("{e}; it may come again after a restart");
                    }
                }
            }
        } else {
            drop(queue);
        }
        drop(io);
        let _ = self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(event);
        self.changes.send_modify(|version| *version += 1);
    }

    fn record_io(&self) -> MutexGuard<'_, ()> {
        self.record_io.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The oldest event the app has not handled, marked as given to the app.
    pub fn next_event(&self) -> Option<QueuedEvent> {
        let mut queue = self.queue();
        let front = queue.events.front_mut()?;
        front.shown = true;
        Some(QueuedEvent {
            id: front.id,
            event: front.event.clone(),
        })
    }

    /// Every event not handled yet, oldest first, without giving any to the app (a queue shown
    /// this way may still drop an event it was not given, as its limits say).
    pub fn waiting_events(&self) -> Vec<QueuedEvent> {
        self.queue()
            .events
            .iter()
            .map(|queued| QueuedEvent {
                id: queued.id,
                event: queued.event.clone(),
            })
            .collect()
    }

    /// Waits for an event the app has not handled and returns it (not removing it).
    pub async fn wait_next_event(&self) -> QueuedEvent {
        let mut changes = self.watch();
        loop {
            if let Some(event) = self.next_event() {
                return event;
            }
            if changes.changed().await.is_err() {
                // The bus lives as long as the client; nothing more can come.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Whether the queued event `id` has a record in the data dir, which handling it removes.
    pub fn is_stored(&self, id: u64) -> bool {
        self.queue()
            .events
            .iter()
            .any(|queued| queued.id == id && queued.sequence.is_some())
    }

    /// Removes the event `id`: the app handled it. Its record is deleted before this returns;
    /// if that fails, it stays. An id no longer queued (handled already, here or by another
    /// client of the data dir) removes nothing. Call it holding the data dir's lock if the
    /// event is stored ([`Self::is_stored`]).
    pub fn event_handled(&self, id: u64) -> Result<Option<Event>, Error> {
        let _io = self.record_io();
        let Some(sequence) = self
            .queue()
            .events
            .iter()
            .find(|queued| queued.id == id)
            .map(|queued| queued.sequence)
        else {
            return Ok(None);
        };
        // Removed from the disk first, without the queue's lock: the app may read the queue
        // meanwhile, and finds the event still there until it is gone for good.
        if let (Some(sequence), Some(store)) = (sequence, &self.store) {
            store.remove_event(sequence)?;
        }
        let mut queue = self.queue();
        let index = queue.events.iter().position(|queued| queued.id == id);
        Ok(index
            .and_then(|index| queue.events.remove(index))
            .map(|queued| queued.event))
    }

    /// A receiver that wakes on every event.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Event records in memory, shared as a data dir is by its clients.
    #[derive(Default)]
    struct Records(Mutex<BTreeMap<u64, Event>>);

    impl EventRecords for Records {
        fn events(&self) -> Option<Vec<(u64, Event)>> {
            let records = self.0.lock().unwrap();
            Some(records.iter().map(|(k, v)| (*k, v.clone())).collect())
        }
        fn save_event(&self, sequence: u64, event: &Event) -> Result<(), Error> {
            self.0.lock().unwrap().insert(sequence, event.clone());
            Ok(())
        }
        fn remove_event(&self, sequence: u64) -> Result<(), Error> {
            self.0.lock().unwrap().remove(&sequence);
            Ok(())
        }
    }

    /// Records whose writes and removals wait, once begun, until the test lets them end: a
    /// disk as slow as a test needs.
    #[derive(Default)]
    struct Gated {
        inner: Records,
        /// (I/O begun, may end).
        gate: Mutex<(bool, bool)>,
        moved: std::sync::Condvar,
    }

    impl Gated {
        fn pass(&self) {
            let mut gate = self.gate.lock().unwrap();
            gate.0 = true;
            self.moved.notify_all();
            while !gate.1 {
                gate = self.moved.wait(gate).unwrap();
            }
        }
        fn wait_until_begun(&self) {
            let mut gate = self.gate.lock().unwrap();
            while !gate.0 {
                gate = self.moved.wait(gate).unwrap();
            }
        }
        fn open(&self) {
            self.gate.lock().unwrap().1 = true;
            self.moved.notify_all();
        }
    }

    impl EventRecords for Gated {
        fn events(&self) -> Option<Vec<(u64, Event)>> {
            self.inner.events()
        }
        fn save_event(&self, sequence: u64, event: &Event) -> Result<(), Error> {
            self.pass();
            self.inner.save_event(sequence, event)
        }
        fn remove_event(&self, sequence: u64) -> Result<(), Error> {
            self.pass();
            self.inner.remove_event(sequence)
        }
    }

    /// What `next_event` returns within five seconds from another thread (`None` if it did not
    /// return: it waited on something that does not end).
    fn next_event_from_another_thread(bus: &Arc<EventBus>) -> Option<Option<QueuedEvent>> {
        let (sender, receiver) = mpsc::channel();
        let bus = bus.clone();
        std::thread::spawn(move || {
            let _ = sender.send(bus.next_event());
        });
        receiver.recv_timeout(Duration::from_secs(5)).ok()
    }

    /// Passes on each event it hears.
    struct Forwarding(std::sync::mpsc::Sender<Event>);

    impl EventListener for Forwarding {
        fn on_event(&self, event: Event) {
            let _ = self.0.send(event);
        }
    }

    #[test]
    fn a_removed_listener_hears_nothing_more_and_is_let_go_of() {
        let bus = EventBus::new(None);
        let (kept_sender, kept) = std::sync::mpsc::channel();
        let (removed_sender, removed) = std::sync::mpsc::channel();
        let removed_listener = Arc::new(Forwarding(removed_sender));
        let let_go = Arc::downgrade(&removed_listener);
        bus.add_listener(Arc::new(Forwarding(kept_sender)));
        let id = bus.add_listener(removed_listener);
        let event = |n: u8| Event::InvoiceRefreshed {
            offer_id: format!("{n}"),
        };
        bus.emit(event(1));
        let wait = std::time::Duration::from_secs(5);
        assert_eq!(removed.recv_timeout(wait).unwrap(), event(1));
        assert_eq!(kept.recv_timeout(wait).unwrap(), event(1));
        assert!(bus.remove_listener(id));
        assert!(!bus.remove_listener(id), "removed once");
        bus.emit(event(2));
        assert_eq!(kept.recv_timeout(wait).unwrap(), event(2));
        assert!(
            removed.try_recv().is_err(),
            "the removed one heard nothing more"
        );
        assert!(let_go.upgrade().is_none(), "and the SDK holds it no longer");
    }

    #[test]
    fn the_queue_answers_while_an_event_record_is_written_or_removed() {
        let records = Arc::new(Gated::default());
        let bus = Arc::new(EventBus::new(Some(records.clone())));
        bus.emit(connected());
        let writing = {
            let bus = bus.clone();
            std::thread::spawn(move || bus.emit(expiring("ee")))
        };
        records.wait_until_begun();
        let front = next_event_from_another_thread(&bus).expect("waited for the write");
        assert_eq!(front.map(|q| q.event), Some(connected()));
        records.open();
        writing.join().unwrap();

        let records = Arc::new(Gated::default());
        let bus = Arc::new(EventBus::new(Some(records.clone())));
        records.open();
        bus.emit(expiring("ee"));
        let notice = bus.next_event().unwrap();
        *records.gate.lock().unwrap() = (false, false);
        let removing = {
            let bus = bus.clone();
            std::thread::spawn(move || bus.event_handled(notice.id))
        };
        records.wait_until_begun();
        let front = next_event_from_another_thread(&bus).expect("waited for the removal");
        assert_eq!(
            front.map(|q| q.event),
            Some(expiring("ee")),
            "still there until its record is gone"
        );
        records.open();
        removing.join().unwrap().unwrap();
        assert_eq!(bus.next_event(), None);
    }

    fn bus() -> (EventBus, Arc<Records>) {
        let records = Arc::new(Records::default());
        (EventBus::new(Some(records.clone())), records)
    }

    fn connected() -> Event {
        Event::ServerConnected {
            server_node_id: "02aa".into(),
        }
    }

    fn expiring(offer_id: &str) -> Event {
        Event::OfferExpiring {
            offer: OfferInfo {
                server_node_id: "02aa".into(),
                slot: 1,
                state: OfferState::Used,
                offer: "lno1".into(),
                offer_id: offer_id.into(),
                label: Some("bio".into()),
                created_at: Duration::ZERO,
                expires_at: None,
                invoice_confirmed_at: None,
                verified_at: None,
                broken: None,
            },
        }
    }

    fn forwarded(n: u64) -> Event {
        Event::InvoiceRequestForwarded {
            offer_id: "aa".into(),
            amount_msats: Some(n),
            payer_note: None,
        }
    }

    #[test]
    fn handling_the_event_shown_after_a_reload_removes_that_event_and_no_other() {
        let (bus, records) = bus();
        bus.emit(connected());
        let shown = bus.next_event().unwrap();
        assert_eq!(shown.event, connected());
        // Another client of the data dir kept a notice meanwhile; this one reloads.
        records.save_event(0, &expiring("ee")).unwrap();
        bus.load_stored();
        assert_eq!(bus.next_event().unwrap(), shown, "nothing comes before it");
        bus.event_handled(shown.id).unwrap();
        assert_eq!(bus.next_event().unwrap().event, expiring("ee"));
        assert_eq!(
            records.events(),
            Some(vec![(0, expiring("ee"))]),
            "still on disk"
        );
        bus.event_handled(shown.id).unwrap();
        assert_eq!(
            records.events().map(|e| e.len()),
            Some(1),
            "an id handled twice removes nothing"
        );
        // Given to the app, then handled by another client, which then keeps a notice of its
        // own under the same number: the app's stays until this app says so, and handling it
        // leaves the other's, which the app has not seen, on disk and in the queue.
        let notice = bus.next_event().unwrap();
        records.remove_event(0).unwrap();
        records.save_event(0, &expiring("ff")).unwrap();
        bus.load_stored();
        assert_eq!(bus.next_event().unwrap(), notice);
        bus.event_handled(notice.id).unwrap();
        assert_eq!(
            bus.next_event().map(|q| q.event),
            Some(expiring("ff")),
            "the other client's notice comes next"
        );
        assert_eq!(records.events(), Some(vec![(0, expiring("ff"))]));
    }

    #[test]
    fn an_event_made_without_the_data_dirs_lock_waits_in_memory_only() {
        let (bus, records) = bus();
        bus.emit_unwritten(forwarded(1));
        assert_eq!(records.events(), Some(vec![]), "not written");
        let queued = bus.next_event().unwrap();
        assert_eq!(queued.event, forwarded(1));
        bus.event_handled(queued.id).unwrap();
        assert_eq!(bus.next_event(), None);
    }

    #[test]
    fn a_notice_made_again_while_the_app_handles_the_first_is_not_swallowed() {
        let (bus, _) = bus();
        bus.emit(expiring("ee"));
        let first = bus.next_event().unwrap();
        bus.emit(expiring("ee"));
        bus.emit(expiring("ee"));
        bus.event_handled(first.id).unwrap();
        let again = bus.next_event().expect("made again, it waits");
        assert_eq!(again.event, expiring("ee"));
        bus.event_handled(again.id).unwrap();
        assert_eq!(bus.next_event(), None, "once while waiting");
    }

    #[test]
    fn an_event_shown_to_the_app_is_never_dropped_for_room_and_notices_never_for_requests() {
        let (bus, records) = bus();
        bus.emit(expiring("ee"));
        bus.emit(connected());
        let notice = bus.next_event().unwrap();
        bus.event_handled(notice.id).unwrap();
        let shown = bus.next_event().unwrap();
        assert_eq!(shown.event, connected());
        bus.emit(expiring("ff"));
        for n in 0..2 * MAX_INFORMATIONAL_EVENTS as u64 {
            bus.emit(Event::InvoiceRefreshed {
                offer_id: format!("{n}"),
            });
            bus.emit(forwarded(n));
        }
        let queue = bus.queue();
        let count =
            |kind: &dyn Fn(&Event) -> bool| queue.events.iter().filter(|q| kind(&q.event)).count();
        assert_eq!(
            count(&|e| matches!(e, Event::InvoiceRequestForwarded { .. })),
            MAX_FORWARDED_REQUESTS
        );
        assert_eq!(
            count(&|e| !e.asks_the_app_to_act()),
            MAX_INFORMATIONAL_EVENTS
        );
        assert_eq!(count(&|e| *e == expiring("ff")), 1, "the notice stays");
        assert_eq!(queue.events.front().map(|q| q.id), Some(shown.id));
        drop(queue);
        assert_eq!(
            records.events().map(|e| e.len()),
            Some(1 + MAX_FORWARDED_REQUESTS),
            "the notice and the requests kept"
        );
        bus.event_handled(shown.id).unwrap();
        assert_eq!(
            bus.next_event().unwrap().event,
            expiring("ff"),
            "in the order they came"
        );
    }
}
